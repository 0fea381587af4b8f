import { isEventKind, spareCrashes, type AgentEvent, type StatusResult } from '@plumb/shared';
import type { DropletStatus } from '../commands/status.js';
import { table } from './format.js';
import { terminalSafe } from './terminal.js';

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

function uptime(since: string | null): string {
  if (!since) return '-';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  return seconds < 120 ? `${seconds}s` : seconds < 7200 ? `${Math.round(seconds / 60)}m` : `${Math.round(seconds / 3600)}h`;
}

function certificateLine(c: StatusResult['heartbeat']['certificates'][number]): string {
  return `  https ${c.domains.join(', ')}: certificate ${c.name} expires ${c.expiresAt.slice(0, 10)} (${Math.floor(c.daysLeft)} days left)`;
}

const mib = (bytes: number) => `${Math.round(bytes / 1024 ** 2)} MiB`;
/** Events listed under a droplet at most; `--json` has all the agent sent. */
const EVENTS_SHOWN = 20;
/** Characters of an event kind this plumb does not know shown at most (it comes from the droplet). */
const EVENT_KIND_SHOWN = 32;

/** One event as a line: when, (which droplet), what, which API and worker, and why. */
export function formatEvent(e: AgentEvent, droplet?: string): string {
  const when = e.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  // A kind from a newer agent: its own name, marked, since this plumb cannot say more than its detail does.
  const kind = isEventKind(e.kind) ? e.kind : `${terminalSafe(e.kind).slice(0, EVENT_KIND_SHOWN)} (new kind)`;
  const what = e.kind === 'restarted' && e.by ? `restarted (${e.by})` : kind;
  const where = e.api === null ? '-' : e.port === null ? e.api : `${e.api}@${e.port}`;
  return [when, ...(droplet ? [droplet] : []), what.padEnd(20), where.padEnd(16), terminalSafe(e.detail)].join('  ');
}

/** The events after the ones an earlier `plumb status` showed (on a first look: the latest). */
function eventLines(d: DropletStatus, s: StatusResult): string {
  const seen = d.seenEventId ?? null;
  const fresh = s.events.filter((e) => seen === null || e.id > seen);
  if (fresh.length === 0) return seen === null ? '\n  no events yet' : '\n  no new events since the last look';
  const shown = fresh.slice(-EVENTS_SHOWN);
  const hidden = (seen === null ? fresh.length : s.lastEventId - seen) - shown.length;
  return [
    seen === null ? '  events:' : `  events since the last look (${shown.length + hidden}):`,
    ...(hidden > 0 ? [`    … ${hidden} earlier (plumb status --json lists the last ${s.events.length})`] : []),
    ...shown.map((e) => `    ${formatEvent(e)}`),
  ]
    .map((line) => `\n${line}`)
    .join('');
}

const POLICY_FLAG = { always: '--spare', never: '--no-spare', auto: 'auto' } as const;

/**
 * An API's warm spare, under the table: its policy, which port, whether the next deploy can take
 * it, its memory; or, without one, why not. Nothing for an API an agent from before auto shows
 * without a spare.
 */
function spareLine(a: StatusResult['apis'][number]): string[] {
  const { spare, sparePolicy: policy } = a;
  if (spare) {
    const crashed = spare.restarts > 0 ? ` (${spareCrashes(spare.restarts, spare.restartsWhileWaiting)}: the next deploy starts cold)` : '';
    return [`  ${a.name}: warm spare${policy ? ` (${POLICY_FLAG[policy]})` : ''} on port ${spare.port}, ${spare.state}${crashed}${spare.rssBytes === null ? '' : `, ${mib(spare.rssBytes)}`}`];
  }
  if (!policy) return [];
  if (policy === 'never') return [`  ${a.name}: no warm spare (--no-spare)`];
  return [`  ${a.name}: no warm spare${a.spareWhy ? ` (${a.spareWhy})` : ` yet (${POLICY_FLAG[policy]}: ${policy === 'auto' ? 'decided' : 'one starts'} after each deploy and agent start)`}`];
}

/** The agent's version, and whether `plumb upgrade` has a newer one. */
function agentLine(d: DropletStatus): string {
  if (!d.agent) return 'agent ?';
  const { version, plumb, upgradeAvailable } = d.agent;
  if (upgradeAvailable) return `agent ${version} (${upgradeAvailable} available: plumb upgrade --droplet ${d.droplet})`;
  return version === plumb ? `agent ${version} (up to date)` : `agent ${version} (this plumb is ${plumb})`;
}

/** `plumb status` as text: per droplet, its health line, a table of its APIs, and its new events. */
export function printStatus(droplets: DropletStatus[]): string {
  if (droplets.length === 0) return 'no droplets (create one with `plumb provision`)';
  return droplets
    .map((d) => {
      if (!d.status) return d.agent ? `${d.droplet}  ${d.address}  ${agentLine(d)}  NOT UNDERSTOOD: ${d.error}` : `${d.droplet}  ${d.address}  UNREACHABLE: ${d.error}`;
      const s = d.status;
      const summary = `${d.droplet}  ${d.address}  ${agentLine(d)}  load ${s.load.map((l) => l.toFixed(2)).join(' ')}  memory ${gib(s.memory.availableBytes)} free of ${gib(s.memory.totalBytes)}  disk ${gib(s.disk.freeBytes)} free  cloud-init ${s.hello.cloudInit.status}`;
      const head = [summary, ...s.heartbeat.certificates.map(certificateLine)].join('\n');
      if (s.apis.length === 0) return `${head}\n  no APIs (deploy one with \`plumb deploy DIR --name NAME\`)${eventLines(d, s)}`;
      const rows = [
        ['  API', 'STATE', 'URL', 'RELEASE', 'WORKERS', 'UPTIME', 'RESTARTS', 'MEMORY', 'SECRETS'],
        ...s.apis.map((a) => [
          `  ${a.name}`,
          a.state,
          `http://${d.address}${a.path}/${a.forwarded ? ' (and /)' : ''}`,
          a.release,
          a.draining.length > 0 ? `${a.workers.length} (+${a.draining.length} draining)` : String(a.workers.length),
          uptime(a.workers[0]?.since ?? null),
          String(a.workers.reduce((n, w) => n + w.restarts, 0)),
          mib(s.heartbeat.workers.filter((w) => w.api === a.name).reduce((n, w) => n + (w.rssBytes ?? 0), 0)),
          // Names only: the values never leave the droplet.
          a.secrets.length > 0 ? a.secrets.join(',') : '-',
        ]),
      ];
      const spares = s.apis.flatMap(spareLine);
      return `${head}\n${[table(rows), ...spares].join('\n')}${eventLines(d, s)}`;
    })
    .join('\n\n');
}
