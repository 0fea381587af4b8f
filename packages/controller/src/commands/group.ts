import { randomBytes } from 'node:crypto';
import { ApiName, checkInput, GROUP_PARALLEL, GROUP_PROVISION_MAX, GroupName, groupTag, PlumbError, wholeNumber, type ApiStatus, type ReleasesResult, type RollbackResult } from '@plumb/shared';
import { RemoteError } from '../agent/client.js';
import type { Context } from '../context.js';
import { withAgent } from '../agent/connect.js';
import { fromEnv } from '../digitalocean/client.js';
import { terminalSafe } from '../output/terminal.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { checkDeployOptions, deploy, prepareBundle, type DeployOptions, type DeployOutcome } from './deploy.js';
import { provision, type ProvisionOptions, type ProvisionResult } from './provision.js';
import { rollback } from './api.js';
import { syncGroup, type SyncResult } from './group-sync.js';
import { status } from './status.js';

const groupName = (group: string) => checkInput(GroupName, group, 'group name');

/**
 * `plumb provision --group NAME --count N`: N droplets at once, each tagged with the group's
 * DigitalOcean tag, so the group is known from DigitalOcean alone.
 */
export async function provisionGroup(opts: Omit<ProvisionOptions, 'name'> & { group: string; count?: number }, ctx: Context): Promise<GroupProvisionResult> {
  const group = groupName(opts.group);
  const count = checkInput(wholeNumber(1, GROUP_PROVISION_MAX), opts.count ?? 1, '--count');
  const before = await fromEnv(ctx.env).listDroplets({ tag: groupTag(group) });
  const names = Array.from({ length: count }, () => `${group.replace(/_/g, '-')}-${randomBytes(3).toString('hex')}`);
  const settled = await Promise.allSettled(names.map((name) => provision({ ...opts, name, tags: [...opts.tags, groupTag(group)] }, ctx)));
  const failed = settled.flatMap((s, i) => (s.status === 'rejected' ? [`${names[i]}: ${s.reason instanceof Error ? s.reason.message : String(s.reason)}`] : []));
  const made = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  if (failed.length > 0) {
    throw new PlumbError('GROUP_PROVISION_FAILED', `${failed.length} of ${count} droplets for group ${group} failed: ${failed.join('; ')}`, `${made.length} are ready (${made.map((r) => r.droplet.name).join(', ') || 'none'}); \`plumb destroy NAME\` removes a failed one, \`plumb provision --group ${group}\` adds one`);
  }
  // A group that already serves APIs: the new droplets get its current releases from a member,
  // so they join the balancer serving what the others serve (they stay out of it until then).
  if (before.length === 0) return made;
  const synced = await syncGroup(group, { only: made.map((r) => r.droplet.id) }, ctx).catch((err: unknown) => {
    const why = err instanceof Error ? err.message : String(err);
    throw new PlumbError('GROUP_SYNC_FAILED', `${made.map((r) => r.droplet.name).join(', ')} joined group ${group} but could not be given its APIs: ${why}`, `they get no traffic until they serve them: \`plumb group sync ${group}\``);
  });
  return synced.apis.length === 0 && synced.ok ? made : made.map((r) => ({ ...r, synced }));
}

/** A new member, and (when the group already had members) how it was brought to the group's releases. */
export type GroupProvisionResult = Array<ProvisionResult & { synced?: SyncResult }>;

/** The group's droplets, from its DigitalOcean tag, oldest first; each must be one this controller can talk to. */
export async function groupMembers(group: string, ctx: Context): Promise<KnownDroplet[]> {
  const checked = groupName(group);
  const tagged = (await fromEnv(ctx.env).listDroplets({ tag: groupTag(checked) })).sort((a, b) => a.id - b.id);
  if (tagged.length === 0) throw new PlumbError('GROUP_EMPTY', `no droplet carries the tag ${groupTag(checked)}`, `make some with \`plumb provision --group ${checked} --count 2\``);
  const known = await ctx.droplets.list();
  return tagged.map((d) => {
    const mine = known.find((k) => k.id === d.id);
    if (!mine || mine.fingerprint === null) throw new PlumbError('GROUP_MEMBER_UNKNOWN', `droplet ${d.name} (${d.id}) of group ${checked} is not enrolled with this controller`, 'import it (`plumb droplets import`) or destroy it');
    return mine;
  });
}

/** Where one droplet of a group stands after a group deploy or rollback. */
export interface MemberOutcome {
  droplet: string;
  id: number;
  outcome: 'updated' | 'failed' | 'untouched';
  /** The live release before, and now. */
  from: string | null;
  release: string | null;
  /** Why it failed; with the droplet's last log lines when the droplet said (the R process's, for a failed start). */
  error?: { code: string; message: string; log: string[] };
}

export interface GroupDeployResult {
  name: string;
  group: string;
  ok: boolean;
  droplets: MemberOutcome[];
  tookMs: number;
  first?: DeployOutcome;
}

const liveRelease = (releases: ReleasesResult) => releases.releases.find((r) => r.live)?.id ?? null;

async function liveOn(droplet: KnownDroplet, name: string, ctx: Context): Promise<string | null> {
  return withAgent(ctx, String(droplet.id), ({ connection }) => connection.request<ReleasesResult>({ type: 'releases', name })).then(liveRelease, () => null);
}

/** Each member's API `name` as its agent reports it (undefined: not served, or the member could not be asked). */
async function apiOnMembers(members: KnownDroplet[], name: string, ctx: Context): Promise<(ApiStatus | undefined)[]> {
  // Not a look by the user: the events stay new for their next `plumb status`.
  const statuses = await status({ members, remember: false }, ctx);
  return statuses.map((s) => s.status?.apis.find((a) => a.name === name));
}

/** The newest group generation of an API any member holds (0: none), from the marks the agents keep. */
export const topGeneration = (group: string, apis: (ApiStatus | undefined)[]) => Math.max(0, ...apis.map((a) => (a?.group?.name === group ? a.group.generation : 0)));

/** Runs `work` on the members `parallel` at a time, wave after wave; stops after the first wave with a failure. */
async function inWaves(members: KnownDroplet[], parallel: number, work: (d: KnownDroplet) => Promise<MemberOutcome>): Promise<MemberOutcome[]> {
  const outcomes: MemberOutcome[] = [];
  for (let i = 0; i < members.length; i += parallel) {
    const wave = await Promise.all(members.slice(i, i + parallel).map(work));
    outcomes.push(...wave);
    if (wave.some((o) => o.outcome === 'failed')) {
      for (const d of members.slice(i + parallel)) outcomes.push({ droplet: d.name, id: d.id, outcome: 'untouched', from: null, release: null });
      break;
    }
  }
  return outcomes;
}

const failure = (err: unknown) => ({ code: err instanceof PlumbError ? err.code : 'ERROR', message: err instanceof Error ? err.message : String(err), log: err instanceof RemoteError ? err.log.slice(-5) : [] });

/**
 * `plumb deploy DIR --name NAME --group G`: the bundle is packed once; droplets are updated one at
 * a time (`parallel` at a time), each with its own zero-downtime rollout, so the balancer always
 * has droplets serving. The first failure stops the rollout: the result says which droplets run
 * which release, and `rollback --group` undoes what this deploy changed.
 */
export async function deployGroup(opts: DeployOptions & { group: string; parallel?: number }, ctx: Context): Promise<GroupDeployResult> {
  const started = Date.now();
  const { name } = checkDeployOptions(opts);
  const parallel = checkInput(wholeNumber(GROUP_PARALLEL.min, GROUP_PARALLEL.max), opts.parallel ?? 1, '--parallel');
  const members = await groupMembers(opts.group, ctx);
  const bundle = await prepareBundle(opts, ctx, true);
  // One more than any member holds: the agents keep it, so "the newest group deploy" needs no clock.
  const before = await apiOnMembers(members, name, ctx);
  const group = { name: opts.group, generation: topGeneration(opts.group, before) + 1 };
  // What each member ran before, from the same status round: no `releases` request per member.
  const liveBefore = new Map(members.map((d, i) => [d.id, before[i]?.release ?? null]));
  let first: DeployOutcome | undefined;
  const droplets = await inWaves(members, parallel, async (droplet) => {
    const from = liveBefore.get(droplet.id) ?? null;
    try {
      const result = await deploy({ ...opts, droplet: String(droplet.id), groupChange: group }, ctx, bundle);
      first ??= result;
      return { droplet: droplet.name, id: droplet.id, outcome: 'updated', from, release: result.release };
    } catch (err) {
      return { droplet: droplet.name, id: droplet.id, outcome: 'failed', from, release: await liveOn(droplet, name, ctx), error: failure(err) };
    }
  });
  return { name, group: opts.group, ok: droplets.every((d) => d.outcome === 'updated'), droplets, tookMs: Date.now() - started, ...(first ? { first } : {}) };
}

/**
 * `plumb rollback NAME --group G`: puts back the release each droplet ran before the group's last
 * deploy, on exactly the droplets that deploy changed (their agents hold its mark, so any
 * controller can do it); the others already run it. Release ids are the droplets' own, so "one
 * release everywhere" means: every droplet back on what it ran before. A rollback that stopped
 * part-way is finished by running it again: the members it reached hold a rollback mark of the
 * same generation, the others still the deploy's.
 */
export async function rollbackGroup(name: string, opts: { group: string; wait?: boolean }, ctx: Context): Promise<GroupDeployResult> {
  const started = Date.now();
  const api = checkInput(ApiName, name, 'API name');
  const group = groupName(opts.group);
  const members = await groupMembers(group, ctx);
  const apis = await apiOnMembers(members, api, ctx);
  const top = topGeneration(group, apis);
  // Only members still on what that deploy put there: one changed by hand since is left as it is.
  const undo = (a: ApiStatus | undefined) => a?.group?.name === group && a.group.generation === top && a.group.kind === 'deploy' && a.release === a.group.to;
  if (top === 0 || !apis.some(undo)) {
    throw new PlumbError('GROUP_NO_DEPLOY', `no group deploy of ${api} to ${group} to undo (its droplets hold no such mark, or it was undone already)`, `roll droplets back one by one: \`plumb rollback ${api} --droplet NAME --to RELEASE\` (\`plumb releases ${api} --droplet NAME\` lists them)`);
  }
  const droplets: MemberOutcome[] = [];
  for (const [i, droplet] of members.entries()) {
    const mark = apis[i]?.group;
    if (!undo(apis[i]) || !mark) {
      droplets.push({ droplet: droplet.name, id: droplet.id, outcome: 'untouched', from: null, release: apis[i]?.release ?? null });
      continue;
    }
    try {
      const result: RollbackResult = await rollback(api, { droplet: String(droplet.id), wait: opts.wait ?? false, group: { name: group, generation: top }, ...(mark.from ? { to: mark.from } : {}) }, ctx);
      droplets.push({ droplet: droplet.name, id: droplet.id, outcome: 'updated', from: result.from, release: result.to });
    } catch (err) {
      droplets.push({ droplet: droplet.name, id: droplet.id, outcome: 'failed', from: mark.to, release: await liveOn(droplet, api, ctx), error: failure(err) });
      break;
    }
  }
  const ok = droplets.every((d) => d.outcome !== 'failed');
  return { name: api, group, ok, droplets, tookMs: Date.now() - started };
}

export function groupText(r: GroupDeployResult, verb: string): string {
  const lines = r.droplets.map((d) => {
    const where = d.release ?? 'no release';
    if (d.outcome === 'updated') return `  ${d.droplet}: ${d.from ?? 'nothing'} -> ${where}`;
    if (d.outcome === 'failed') return [`  ${d.droplet}: FAILED (${d.error?.message ?? '?'}); runs ${where}`, ...(d.error?.log ?? []).map((l) => `      ${terminalSafe(l)}`)].join('\n');
    return `  ${d.droplet}: untouched; runs ${d.release ?? 'what it ran before'}`;
  });
  const head = r.ok
    ? `${verb} ${r.name} on every droplet of group ${r.group} (${r.droplets.length}) in ${(r.tookMs / 1000).toFixed(1)} s`
    : `${verb} ${r.name} on group ${r.group} stopped at the first failure: the droplets run different releases`;
  const tail = r.ok ? [] : [`  \`plumb rollback ${r.name} --group ${r.group}\` puts back what each droplet ran before`];
  return [head, ...lines, ...tail].join('\n');
}
