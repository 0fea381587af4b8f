import type { NginxModel, RenderedApi } from './model.js';
import { sortedApis } from './nginx.js';

/**
 * The nftables table (`ip plumb`) that makes each API's front port reach its live workers:
 * a connection nginx opens to 127.0.0.1:FRONT is sent on (DNAT, on the output hook) to one of
 * the workers, in turn. The mapping is chosen once per connection and kept by conntrack, so
 * replacing the table (one `nft -f` transaction, atomic) sends new connections to new workers
 * while connections already open finish on the old ones: that is the switch, without touching
 * nginx. Rendered whole from the agent's state, as nginx's config is.
 */
export function renderNat(model: Pick<NginxModel, 'apis'>): string {
  const apis = sortedApis(model.apis).filter((a) => a.instances.length > 0);
  return [
    '# Written by plumb-agent from its state (/var/lib/plumb/state.json); applied with `nft -f`.',
    '# Each API\'s front port (nginx\'s upstream) -> its live R workers, a new connection each in turn.',
    // Creating the table first makes the delete valid on a first run; the file is one transaction.
    'table ip plumb',
    'delete table ip plumb',
    'table ip plumb {',
    '    chain output {',
    '        type nat hook output priority dstnat; policy accept;',
    ...apis.map(rule),
    '    }',
    '}',
    '',
  ].join('\n');
}

function rule(api: RenderedApi): string {
  const ports = api.instances.map((i) => i.port);
  const map = ports.map((port, i) => `${i} : ${port}`).join(', ');
  return `        ip daddr 127.0.0.1 tcp dport ${api.frontPort} dnat to 127.0.0.1 : numgen inc mod ${ports.length} map { ${map} } comment "${api.name}"`;
}
