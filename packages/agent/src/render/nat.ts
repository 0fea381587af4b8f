import { BOOT_ROUTING_WAIT_MS } from '@plumb/shared';
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

/**
 * /etc/systemd/system/plumb-routing.service: the table above does not survive a reboot, and
 * until the agent has started and put it back, nginx's upstreams lead nowhere (502). This unit
 * loads the saved table before nginx starts, then waits (bounded) until each API's front port
 * reaches a worker, so nginx's first answer after a boot comes from the API. After
 * nftables.service: Debian's /etc/nftables.conf begins with `flush ruleset`.
 */
export function renderRoutingUnit(natRules: string, agentCommand: string[]): string {
  return `# Written by plumb-agent; edits here are overwritten.
[Unit]
Description=plumb: API front ports to their workers (nftables), before nginx
After=local-fs.target nftables.service
Before=nginx.service
ConditionPathExists=${natRules}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f ${natRules}
ExecStart=${agentCommand.join(' ')} --wait-for-workers
TimeoutStartSec=${Math.ceil(BOOT_ROUTING_WAIT_MS / 1000) + 30}

[Install]
WantedBy=multi-user.target
`;
}

/** The front ports a rendered table sends on to workers. */
export function frontPortsOf(ruleset: string): number[] {
  return [...ruleset.matchAll(/tcp dport (\d+) dnat/g)].map((m) => Number(m[1]));
}
