import { BOOT_ROUTING_WAIT_MS, FRONT_PORT_FIRST, FRONT_PORT_LAST, METADATA_ADDRESS, WORKER_PORT_FIRST, WORKER_PORT_LAST } from '@plumb/shared';
import { renderRefused, type NginxModel, type RenderedApi } from './model.js';
import { sortedApis } from './nginx.js';

/** Debian's fixed uid of www-data (base-passwd), which nginx's workers run as. */
const NGINX_UID = 33;

/**
 * The nftables table (`ip plumb`) that makes each API's front port reach its live workers:
 * a connection nginx opens to 127.0.0.1:FRONT is sent on (DNAT, on the output hook) to one of
 * the workers, in turn. The mapping is chosen once per connection and kept by conntrack, so
 * replacing the table (one `nft -f` transaction, atomic) sends new connections to new workers
 * while connections already open finish on the old ones: that is the switch, without touching
 * nginx. Rendered whole from the agent's state, as nginx's config is.
 *
 * The same table keeps the APIs apart on loopback (security.md): a new connection to any front
 * or worker port is let through only from root (the agent), www-data (nginx) and the API's own
 * user (`uids`: API name -> its user's uid), matched by the socket's owner after the DNAT, so a
 * worker's own port, a front port and a worker still starting are all covered. And no API user
 * reaches the metadata address (it serves the droplet's user-data). Checked by the kernel where
 * the connection starts, so it holds whatever the API runs (R, curl, a shell).
 */
export function renderNat(model: Pick<NginxModel, 'apis'>, uids: ReadonlyMap<string, number>): string {
  const all = sortedApis(model.apis);
  const apis = all.filter((a) => a.instances.length > 0);
  const owned = all.flatMap((a) => {
    const uid = uids.get(a.name);
    if (uid === undefined) return [];
    if (!Number.isInteger(uid) || uid <= 0 || uid === NGINX_UID) throw renderRefused(`the uid ${uid} of API ${a.name}`);
    return [{ uid, ports: [a.frontPort, ...a.instances.map((i) => i.port)] }];
  });
  const apiUids = [...new Set(owned.map((o) => o.uid))].sort((a, b) => a - b);
  const ownPorts = owned.flatMap((o) => o.ports.map((port) => `${o.uid} . ${port}`));
  return [
    '# Written by plumb-agent from its state (/var/lib/plumb/state.json); applied with `nft -f`.',
    '# Each API\'s front port (nginx\'s upstream) -> its live R workers, a new connection each in turn;',
    '# those ports reachable only by the agent, nginx and the API itself; no metadata address for APIs.',
    // Creating the table first makes the delete valid on a first run; the file is one transaction.
    'table ip plumb',
    'delete table ip plumb',
    'table ip plumb {',
    '    chain output {',
    '        type nat hook output priority dstnat; policy accept;',
    ...apis.map(rule),
    '    }',
    '    chain isolate {',
    '        type filter hook output priority filter; policy accept;',
    ...(apiUids.length > 0 ? [`        ip daddr ${METADATA_ADDRESS} meta skuid { ${apiUids.join(', ')} } reject comment "no metadata service for the APIs"`] : []),
    `        ip daddr 127.0.0.0/8 tcp dport { ${FRONT_PORT_FIRST}-${FRONT_PORT_LAST}, ${WORKER_PORT_FIRST}-${WORKER_PORT_LAST} } ct state new jump api_ports`,
    '    }',
    '    chain api_ports {',
    `        meta skuid { 0, ${NGINX_UID} } accept comment "the agent, nginx"`,
    ...(ownPorts.length > 0 ? [`        meta skuid . tcp dport { ${ownPorts.join(', ')} } accept comment "each API its own"`] : []),
    '        reject with tcp reset',
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
 * /etc/systemd/system/plumb-isolation.service: the table above does not survive a reboot. This
 * loads the saved one before any API worker starts (ISOLATION_DROP_IN orders every plumber-*
 * unit after it), so at boot no API has a moment to reach another's ports or the metadata
 * address. After nftables.service: Debian's /etc/nftables.conf begins with `flush ruleset`.
 */
export function renderIsolationUnit(natRules: string): string {
  return `# Written by plumb-agent; edits here are overwritten.
[Unit]
Description=plumb: the saved nftables table (APIs kept apart, front ports), before any API worker
After=local-fs.target nftables.service
Before=nginx.service
ConditionPathExists=${natRules}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f ${natRules}

[Install]
WantedBy=multi-user.target
`;
}

/**
 * /etc/systemd/system/plumber-.service.d/plumb-isolation.conf: systemd reads a drop-in under a
 * unit name's prefix up to a dash for every unit with that prefix, so this holds for every API's
 * workers (plumber-NAME@PORT), those deployed before this agent version included, without
 * rewriting their units.
 */
export const ISOLATION_DROP_IN = `# Written by plumb-agent; edits here are overwritten.
# Every API worker starts only once plumb's nftables table (the APIs kept apart) is loaded.
[Unit]
Wants=plumb-isolation.service
After=plumb-isolation.service
`;

/**
 * /etc/systemd/system/plumb-routing.service: until the table is back and the workers listen,
 * nginx's upstreams lead nowhere (502). This waits, after plumb-isolation.service has loaded the
 * table, until each API's front port reaches a worker, and nginx waits for it, so nginx's first
 * answer after a boot comes from the API.
 */
export function renderRoutingUnit(natRules: string, agentCommand: string[]): string {
  return `# Written by plumb-agent; edits here are overwritten.
[Unit]
Description=plumb: nginx starts once each API's front port reaches a worker
Wants=plumb-isolation.service
After=plumb-isolation.service
Before=nginx.service
ConditionPathExists=${natRules}

[Service]
Type=oneshot
RemainAfterExit=yes
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
