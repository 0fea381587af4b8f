import { ApiName, checkInput, JournalSince, LogLines, PlumbError, type ApiStatus, type GroupMark, type LogEntry, type LogsResult } from '@plumb/shared';
import type { PerDroplet } from '../agent/connect.js';
import type { Context } from '../context.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { groupMembers } from './group.js';
import { logs } from './logs.js';
import { status, type DropletStatus } from './status.js';

/** A command run on every droplet of a group: each droplet's outcome, and those a rollout stopped before. */
export interface GroupRun<T> {
  group: string;
  ok: boolean;
  droplets: PerDroplet<T>[];
  /** Not asked: an earlier droplet of a rolling change failed. */
  untouched: string[];
}

const failure = (err: unknown) =>
  err instanceof PlumbError ? { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } : { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) };

/**
 * Runs `work` on each member: `together` (reads) all at once; `rolling` (changes) one after
 * another, stopping at the first failure, the way a group deploy does, so a change that breaks
 * the API breaks it on one droplet while the balancer sends traffic to the others.
 */
export async function onGroup<T>(group: string, ctx: Context, mode: 'together' | 'rolling', work: (droplet: KnownDroplet) => Promise<T>): Promise<GroupRun<T>> {
  const members = await groupMembers(group, ctx);
  const one = async (d: KnownDroplet): Promise<PerDroplet<T>> => {
    try {
      return { droplet: d.name, result: await work(d) };
    } catch (err) {
      return { droplet: d.name, error: failure(err) };
    }
  };
  if (mode === 'together') {
    const droplets = await Promise.all(members.map(one));
    return { group, ok: droplets.every((d) => !d.error), droplets, untouched: [] };
  }
  const droplets: PerDroplet<T>[] = [];
  for (const d of members) {
    const done = await one(d);
    droplets.push(done);
    if (done.error) return { group, ok: false, droplets, untouched: members.slice(droplets.length).map((m) => m.name) };
  }
  return { group, ok: true, droplets, untouched: [] };
}

/** A group run as text: a line (or block) per droplet, then those not reached. */
export function groupRunText<T>(r: GroupRun<T>, text: (result: T) => string): string {
  const rows = r.droplets.map((d) => {
    if (d.error) return `${d.droplet}: FAILED: ${d.error.message}${d.error.hint ? `\n  ${d.error.hint}` : ''}`;
    const lines = text(d.result).split('\n');
    return lines.length === 1 ? `${d.droplet}: ${lines[0]}` : [`${d.droplet}:`, ...lines.map((l) => `  ${l}`)].join('\n');
  });
  const untouched = r.untouched.length > 0 ? [`untouched (an earlier droplet failed, so nothing was changed there): ${r.untouched.join(', ')}`] : [];
  return [...rows, ...untouched].join('\n');
}

/** Where one member stands for one API of the group. */
export interface MemberRelease {
  droplet: string;
  id: number;
  /** current: runs the group's release; drift: another; missing: does not serve the API; unknown: could not be asked. */
  state: 'current' | 'drift' | 'missing' | 'unknown';
  release: string | null;
  digest: string | null;
  deployedAt: string | null;
}

/** One API across the group: its current release (the group's newest change, on `source`) and each member's. */
export interface GroupApi {
  name: string;
  /** `mark`: the group change that put the release there (null: none, or the member was changed by hand since). */
  source: { droplet: string; id: number; release: string; digest: string | null; deployedAt: string; mark: GroupMark | null };
  members: MemberRelease[];
}

export interface GroupStatus {
  group: string;
  apis: GroupApi[];
  /** Members not on the group's current release of every API (drift, missing); `plumb group sync` fixes them. */
  drifted: string[];
  droplets: DropletStatus[];
}

/** The member's mark of this group, while the member still runs what that change put there. */
const liveMark = (group: string, api: ApiStatus) => (api.group?.name === group && api.group.to === api.release ? api.group : null);

/**
 * How recent a member's release is as the group's: its mark's generation first (a rollback's
 * mark beats the deploy mark of the same generation it undid); the agent's switch time only
 * between members without marks (agents from before them), the one place clocks still decide.
 */
function recency(group: string, api: ApiStatus): [number, number, number] {
  const mark = liveMark(group, api);
  if (mark) return [mark.generation, mark.kind === 'rollback' ? 1 : 0, 0];
  const stale = api.group?.name === group ? api.group.generation : 0;
  return [stale, -1, stale === 0 ? Date.parse(api.deployedAt) : 0];
}

const newer = (a: [number, number, number], b: [number, number, number]) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/**
 * Each API of the group and which member runs what. A group's "current release" of an API is the
 * one its newest group change put live (the generation number each group deploy and rollback
 * carries, kept by the agents), so no two agents' clocks are compared: after a group deploy that
 * is the new release; a member that was off during it keeps the older mark and is flagged. On a
 * tie the oldest member is the source. Release ids are each droplet's own, so "the same release"
 * is decided by content and env (ReleaseDigest).
 */
export function groupApis(group: string, members: KnownDroplet[], statuses: DropletStatus[]): GroupApi[] {
  const byName = new Map<string, { droplet: KnownDroplet; api: ApiStatus }[]>();
  members.forEach((droplet, i) => {
    for (const api of statuses[i]?.status?.apis ?? []) byName.set(api.name, [...(byName.get(api.name) ?? []), { droplet, api }]);
  });
  return [...byName.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, serving]) => {
      const newest = serving.reduce((a, b) => (newer(recency(group, b.api), recency(group, a.api)) > 0 ? b : a));
      // Without digests (agents from before them) only the source itself is known to run it.
      const same = (api: ApiStatus) => api === newest.api || (api.digest !== null && api.digest === newest.api.digest);
      return {
        name,
        source: { droplet: newest.droplet.name, id: newest.droplet.id, release: newest.api.release, digest: newest.api.digest, deployedAt: newest.api.deployedAt, mark: liveMark(group, newest.api) },
        members: members.map((d, i): MemberRelease => {
          const api = statuses[i]?.status?.apis.find((a) => a.name === name);
          const base = { droplet: d.name, id: d.id };
          if (!statuses[i]?.status) return { ...base, state: 'unknown', release: null, digest: null, deployedAt: null };
          if (!api) return { ...base, state: 'missing', release: null, digest: null, deployedAt: null };
          return { ...base, state: same(api) ? 'current' : 'drift', release: api.release, digest: api.digest, deployedAt: api.deployedAt };
        }),
      };
    });
}

const driftedOf = (apis: GroupApi[]) => [...new Set(apis.flatMap((a) => a.members.filter((m) => m.state === 'drift' || m.state === 'missing').map((m) => m.droplet)))];

/** `plumb status --group G`: each member's status, and per API which member runs which release. */
export async function statusGroup(group: string, ctx: Context): Promise<GroupStatus> {
  const members = await groupMembers(group, ctx);
  const droplets = await status({ members }, ctx);
  const apis = groupApis(group, members, droplets);
  return { group, apis, drifted: driftedOf(apis), droplets };
}

const short = (digest: string | null) => (digest === null ? '' : ` (content ${digest.slice(0, 12)})`);

/** The group part of `status --group` as text, before each droplet's own status. */
export function groupStatusText(r: GroupStatus): string {
  const head =
    r.drifted.length === 0
      ? `group ${r.group}: ${r.droplets.length} droplets, every one on the group's current release of each API`
      : `group ${r.group}: ${r.droplets.length} droplets; not on the group's current release: ${r.drifted.join(', ')} (\`plumb group sync ${r.group}\` brings them there)`;
  const apis = r.apis.map((a) =>
    [
      `  ${a.name}: current release ${a.source.release}${short(a.source.digest)}, live on ${a.source.droplet} since ${a.source.deployedAt}`,
      ...a.members.map((m) => {
        if (m.state === 'unknown') return `    ${m.droplet}: UNKNOWN (could not be asked)`;
        if (m.state === 'missing') return `    ${m.droplet}: MISSING (does not serve ${a.name})`;
        return `    ${m.droplet}: ${m.release}${short(m.digest)}${m.state === 'drift' ? '  DRIFT (not the group\'s current release)' : ''}`;
      }),
    ].join('\n'),
  );
  return [head, ...(r.apis.length === 0 ? ['  no APIs yet'] : apis)].join('\n');
}

/**
 * `plumb logs NAME --group G`: every member's journal, each entry with its droplet. Without
 * follow, the members' last lines merged by time; with follow, the streams merged as they come.
 */
export async function logsGroup(
  opts: { name: string; group: string; lines?: number; since?: string; follow?: boolean },
  out: (droplet: string, entry: LogEntry) => void,
  signal: AbortSignal,
  ctx: Context,
): Promise<GroupRun<LogsResult>> {
  // Checked once here, so bad input is one error, not one per droplet.
  checkInput(ApiName, opts.name, 'API name');
  checkInput(LogLines, opts.lines ?? 50, '-n');
  if (opts.since !== undefined) checkInput(JournalSince, opts.since, '--since');
  const held: { droplet: string; entry: LogEntry }[] = [];
  const run = await onGroup(opts.group, ctx, 'together', (d) =>
    logs({ ...opts, droplet: String(d.id) }, (entry) => (opts.follow ? out(d.name, entry) : held.push({ droplet: d.name, entry })), signal, ctx),
  );
  for (const { droplet, entry } of held.sort((a, b) => a.entry.time - b.entry.time)) out(droplet, entry);
  return run;
}
