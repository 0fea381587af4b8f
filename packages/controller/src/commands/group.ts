import { randomBytes } from 'node:crypto';
import { AGENT_FEATURES, ApiName, checkInput, GROUP_PARALLEL, GROUP_PROVISION_MAX, GroupName, groupTag, PlumbError, wholeNumber, type ApiStatus, type ReleasesResult, type RollbackResult } from '@plumb/shared';
import { RemoteError } from '../agent/client.js';
import type { Context } from '../context.js';
import { withAgent } from '../agent/connect.js';
import { fromEnv } from '../digitalocean/client.js';
import { terminalSafe } from '../output/terminal.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { checkDeployOptions, deploy, prepareBundle, spareAutoRefused, type DeployOptions, type DeployOutcome } from './deploy.js';
import { provision, type ProvisionOptions, type ProvisionResult } from './provision.js';
import { rollback } from './api.js';
import { syncGroup, type SyncResult } from './group-sync.js';
import { status, type DropletStatus } from './status.js';
import { GroupGenerations } from '../local/group-generations.js';

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
  /** skipped: it could not be asked (a deploy goes on without it only with --skip-unreachable; a rollback always does, and says so). */
  outcome: 'updated' | 'failed' | 'untouched' | 'skipped';
  /** The live release before, and now. */
  from: string | null;
  release: string | null;
  /** The droplet's own time for its deploy, as its agent measured it (the controller's and the network's share is the rest). */
  tookMs?: number;
  /** It had no release before the group deploy a rollback undid (it joined later): the release the others went back to was copied to it from this member. */
  copiedFrom?: string;
  /** Why it failed or was skipped; with the droplet's last log lines when the droplet said (the R process's, for a failed start). */
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

// Not a look by the user: the events stay new for their next `plumb status`.
const memberStatuses = (members: KnownDroplet[], ctx: Context) => status({ members, remember: false }, ctx);

/** Each member's API `name` as its agent reports it (undefined: not served, or the member could not be asked). */
const apiOf = (statuses: DropletStatus[], name: string) => statuses.map((s) => s.status?.apis.find((a) => a.name === name));

/** The newest group generation of an API any member holds (0: none), from the marks the agents keep. */
export const topGeneration = (group: string, apis: (ApiStatus | undefined)[]) => Math.max(0, ...apis.map((a) => (a?.group?.name === group ? a.group.generation : 0)));

/**
 * The generation of a new group deploy: one more than any mark a member holds and than this
 * controller last gave the API (`recorded`). It must be new: two deploys sharing one would leave
 * "the group's current release" to the tie rule. A member that cannot be asked may hold a higher
 * mark (another controller's deploy that reached it alone), so plumb refuses unless told to go on
 * without it (`skipUnreachable`); then only another controller's deploy can still tie.
 */
export function nextGeneration(group: string, api: string, members: KnownDroplet[], statuses: DropletStatus[], opts: { skipUnreachable: boolean; recorded: number }): { generation: number; unreachable: KnownDroplet[] } {
  const unreachable = members.filter((_, i) => !statuses[i]?.status);
  // Going on without every member is a deploy to none.
  if (unreachable.length > 0 && (!opts.skipUnreachable || unreachable.length === members.length)) {
    const why = unreachable.map((d) => `${d.name} (${statuses[members.indexOf(d)]?.error ?? 'no answer'})`).join(', ');
    throw new PlumbError(
      'GROUP_MEMBER_UNREACHABLE',
      `${unreachable.length === 1 ? 'a droplet' : 'droplets'} of group ${group} could not be asked: ${why}; nothing was deployed (its mark of the group's last deploy is needed to number this one)`,
      unreachable.length === members.length
        ? `no droplet of group ${group} answers: check them with \`plumb status --group ${group}\``
        : `bring it back and deploy again, or add --skip-unreachable to deploy to the others (it then drifts until \`plumb group sync ${group}\`)`,
    );
  }
  return { generation: Math.max(topGeneration(group, apiOf(statuses, api)), opts.recorded) + 1, unreachable };
}

/**
 * `--spare auto` to a group: every member that answered must know it, checked before the first
 * wave (a member from before auto would fail its deploy halfway through the group). Members that
 * could not be asked are nextGeneration's to refuse or skip.
 */
export function checkSpareAuto(spare: DeployOptions['spare'], members: KnownDroplet[], statuses: DropletStatus[]): void {
  if (spare !== 'auto') return;
  const old = members.filter((_, i) => {
    const answered = statuses[i]?.status;
    return answered !== undefined && !answered.hello.features.includes(AGENT_FEATURES.spareAuto);
  });
  if (old.length > 0) throw spareAutoRefused(old.map((d) => d.name));
}

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
export async function deployGroup(opts: DeployOptions & { group: string; parallel?: number; skipUnreachable?: boolean }, ctx: Context): Promise<GroupDeployResult> {
  const started = Date.now();
  const { name } = checkDeployOptions(opts);
  const parallel = checkInput(wholeNumber(GROUP_PARALLEL.min, GROUP_PARALLEL.max), opts.parallel ?? 1, '--parallel');
  const members = await groupMembers(opts.group, ctx);
  const bundle = await prepareBundle(opts, ctx, true);
  try {
    // Numbered from the marks the agents keep, so "the newest group deploy" needs no clock.
    const statuses = await memberStatuses(members, ctx);
    checkSpareAuto(opts.spare, members, statuses);
    const { generation, unreachable } = await GroupGenerations.in(ctx.configDir).claim(opts.group, name, (recorded) => nextGeneration(opts.group, name, members, statuses, { skipUnreachable: opts.skipUnreachable ?? false, recorded }));
    const group = { name: opts.group, generation };
    // What each member ran before, from the same status round: no `releases` request per member.
    const before = apiOf(statuses, name);
    const liveBefore = new Map(members.map((d, i) => [d.id, before[i]?.release ?? null]));
    let first: DeployOutcome | undefined;
    const reachable = members.filter((d) => !unreachable.includes(d));
    const deployed = await inWaves(reachable, parallel, async (droplet) => {
      const from = liveBefore.get(droplet.id) ?? null;
      try {
        const result = await deploy({ ...opts, droplet: String(droplet.id), groupChange: group }, ctx, bundle);
        first ??= result;
        return { droplet: droplet.name, id: droplet.id, outcome: 'updated', from, release: result.release, tookMs: result.tookMs };
      } catch (err) {
        return { droplet: droplet.name, id: droplet.id, outcome: 'failed', from, release: await liveOn(droplet, name, ctx), error: failure(err) };
      }
    });
    const skipped = unreachable.map((d): MemberOutcome => ({ droplet: d.name, id: d.id, outcome: 'skipped', from: null, release: null, error: { code: 'AGENT_UNREACHABLE', message: statuses[members.indexOf(d)]?.error ?? 'no answer', log: [] } }));
    const droplets = members.map((d) => [...deployed, ...skipped].find((o) => o.id === d.id)).filter((o): o is MemberOutcome => o !== undefined);
    return { name, group: opts.group, ok: deployed.every((d) => d.outcome === 'updated'), droplets, tookMs: Date.now() - started, ...(first ? { first } : {}) };
  } finally {
    await bundle.close();
  }
}

/** What `rollback --group` does to one member, decided from the marks before anything changes. */
export type RollbackStep =
  | { droplet: KnownDroplet; act: 'rollback'; from: string; to: string }
  /** Joined after the deploy (no release before it): given the release the others go back to. */
  | { droplet: KnownDroplet; act: 'catch-up'; release: string }
  /** Could not be asked: it may hold that deploy's mark, so the group may not be on one release. */
  | { droplet: KnownDroplet; act: 'skip'; why: string }
  | { droplet: KnownDroplet; act: 'leave'; release: string | null };

/**
 * The plan of `rollback NAME --group G` from the members' statuses: the newest generation's
 * `deploy` mark is undone on the members still running what it put there (one changed by hand
 * since is left as it is); a member that joined after it gets the release the others go back to;
 * a member that cannot be asked is skipped and said so, never counted as untouched.
 */
export function rollbackPlan(group: string, api: string, members: KnownDroplet[], statuses: DropletStatus[], recorded = 0): { generation: number; steps: RollbackStep[] } {
  const unreachable = members.filter((_, i) => !statuses[i]?.status);
  const why = (d: KnownDroplet) => statuses[members.indexOf(d)]?.error ?? 'no answer';
  const named = (ds: KnownDroplet[]) => ds.map((d) => `${d.name} (${why(d)})`).join(', ');
  if (unreachable.length === members.length) {
    throw new PlumbError('GROUP_MEMBER_UNREACHABLE', `no droplet of group ${group} could be asked: ${named(unreachable)}; nothing was rolled back`, `check them with \`plumb status --group ${group}\`, then run this again`);
  }
  const apis = apiOf(statuses, api);
  const top = topGeneration(group, apis);
  // This controller numbered a later deploy than any member that answered holds: it may have
  // reached only members that cannot be asked, and undoing `top` here would undo an older deploy.
  if (unreachable.length > 0 && recorded > top) {
    throw new PlumbError('GROUP_MEMBER_UNREACHABLE', `the group's last deploy of ${api} (generation ${recorded}) may have reached only ${named(unreachable)}, which could not be asked; nothing was rolled back`, `once it is back, run \`plumb rollback ${api} --group ${group}\` again`);
  }
  const undo = (a: ApiStatus | undefined) => a?.group?.name === group && a.group.generation === top && a.group.kind === 'deploy' && a.release === a.group.to;
  if (top === 0 || !apis.some(undo)) {
    // The deploy to undo may have reached only the members that cannot be asked.
    if (unreachable.length > 0) {
      throw new PlumbError('GROUP_MEMBER_UNREACHABLE', `no droplet of group ${group} that answered holds a group deploy of ${api} to undo, and ${named(unreachable)} could not be asked; nothing was rolled back`, `once it is back, run \`plumb rollback ${api} --group ${group}\` again`);
    }
    throw new PlumbError('GROUP_NO_DEPLOY', `no group deploy of ${api} to ${group} to undo (its droplets hold no such mark, or it was undone already)`, `roll droplets back one by one: \`plumb rollback ${api} --droplet NAME --to RELEASE\` (\`plumb releases ${api} --droplet NAME\` lists them)`);
  }
  // A member that joined after that deploy got its release by `group sync`, with nothing before it
  // (`from: null`): it has no release to go back to.
  const steps = members.map((droplet, i): RollbackStep => {
    const a = apis[i];
    if (!statuses[i]?.status) return { droplet, act: 'skip', why: why(droplet) };
    if (!undo(a) || !a?.group) return { droplet, act: 'leave', release: a?.release ?? null };
    return a.group.from === null ? { droplet, act: 'catch-up', release: a.group.to } : { droplet, act: 'rollback', from: a.group.to, to: a.group.from };
  });
  if (!steps.some((s) => s.act === 'rollback')) {
    throw new PlumbError('GROUP_NO_DEPLOY', `the group's last deploy of ${api} to ${group} was the first release of ${api} on every droplet it reached: there is no earlier release to go back to`, `deploy the release you want (\`plumb deploy DIR --name ${api} --group ${group}\`), or take ${api} off with \`plumb remove ${api} --group ${group}\``);
  }
  return { generation: top, steps };
}

/**
 * `plumb rollback NAME --group G`: puts back the release each droplet ran before the group's last
 * deploy, on exactly the droplets that deploy changed (their agents hold its mark, so any
 * controller can do it); the others already run it. Release ids are the droplets' own, so "one
 * release everywhere" means: every droplet back on what it ran before. A rollback that stopped
 * part-way is finished by running it again: the members it reached hold a rollback mark of the
 * same generation, the others still the deploy's. Members that joined after the deploy get the
 * release the others went back to, copied from one of them once they are back.
 */
export async function rollbackGroup(name: string, opts: { group: string; wait?: boolean }, ctx: Context): Promise<GroupDeployResult> {
  const started = Date.now();
  const api = checkInput(ApiName, name, 'API name');
  const group = groupName(opts.group);
  const members = await groupMembers(group, ctx);
  const { generation, steps } = rollbackPlan(group, api, members, await memberStatuses(members, ctx), await GroupGenerations.in(ctx.configDir).highest(group, api));
  const outcomes = new Map<number, MemberOutcome>();
  let ok = true;
  for (const step of steps) {
    const { droplet } = step;
    const base = { droplet: droplet.name, id: droplet.id };
    if (step.act === 'skip') {
      outcomes.set(droplet.id, { ...base, outcome: 'skipped', from: null, release: null, error: { code: 'AGENT_UNREACHABLE', message: step.why, log: [] } });
    } else if (step.act === 'leave' || (step.act === 'rollback' && !ok)) {
      outcomes.set(droplet.id, { ...base, outcome: 'untouched', from: null, release: step.act === 'leave' ? step.release : step.from });
    } else if (step.act === 'rollback') {
      try {
        const result: RollbackResult = await rollback(api, { droplet: String(droplet.id), wait: opts.wait ?? false, group: { name: group, generation }, to: step.to }, ctx);
        outcomes.set(droplet.id, { ...base, outcome: 'updated', from: result.from, release: result.to, tookMs: result.tookMs });
      } catch (err) {
        outcomes.set(droplet.id, { ...base, outcome: 'failed', from: step.from, release: await liveOn(droplet, api, ctx), error: failure(err) });
        ok = false;
      }
    }
  }
  const joining = steps.flatMap((s) => (s.act === 'catch-up' ? [s] : []));
  for (const { droplet: d, release } of joining) outcomes.set(d.id, { droplet: d.name, id: d.id, outcome: 'untouched', from: null, release });
  const joined = joining.map((s) => s.droplet);
  if (ok && joined.length > 0) {
    for (const synced of await catchUp(group, api, joined, ctx)) outcomes.set(synced.id, synced);
  }
  const droplets = members.flatMap((d) => outcomes.get(d.id) ?? []);
  return { name: api, group, ok: droplets.every((d) => d.outcome !== 'failed'), droplets, tookMs: Date.now() - started };
}

/** The members that joined after an undone deploy, given the group's release again (group sync, this API only). */
async function catchUp(group: string, api: string, joined: KnownDroplet[], ctx: Context): Promise<MemberOutcome[]> {
  const synced = await syncGroup(group, { only: joined.map((d) => d.id), api }, ctx);
  const copied = synced.apis.find((a) => a.name === api);
  return joined.map((d): MemberOutcome => {
    const done = copied?.droplets.find((o) => o.id === d.id);
    if (done) return { ...done, copiedFrom: copied?.source ?? '' };
    if (synced.unreachable.includes(d.name)) return { droplet: d.name, id: d.id, outcome: 'failed', from: null, release: null, error: { code: 'AGENT_UNREACHABLE', message: 'could not be asked to take the release the others went back to', log: [] } };
    // Already on that release's content.
    return { droplet: d.name, id: d.id, outcome: 'untouched', from: null, release: null };
  });
}

export function groupText(r: GroupDeployResult, verb: string): string {
  const rollingBack = verb === 'rolled back';
  const lines = r.droplets.map((d) => {
    const where = d.release ?? 'no release';
    if (d.outcome === 'updated') return `  ${d.droplet}: ${d.from ?? 'nothing'} -> ${where}${d.copiedFrom ? ` (it had no release before that deploy: copied from ${d.copiedFrom})` : ''}`;
    if (d.outcome === 'skipped') return `  ${d.droplet}: SKIPPED, could not be asked (${d.error?.message ?? '?'}); once it is back, \`plumb group sync ${r.group}\` gives it the release ${rollingBack ? 'the others went back to' : 'the others run'}`;
    if (d.outcome === 'failed') return [`  ${d.droplet}: FAILED (${d.error?.message ?? '?'}); runs ${where}`, ...(d.error?.log ?? []).map((l) => `      ${terminalSafe(l)}`)].join('\n');
    return `  ${d.droplet}: untouched; runs ${d.release ?? 'what it ran before'}`;
  });
  const skipped = r.droplets.filter((d) => d.outcome === 'skipped').map((d) => d.droplet);
  const took = `${(r.tookMs / 1000).toFixed(1)} s`;
  const head = !r.ok
    ? `${verb} ${r.name} on group ${r.group} stopped at the first failure: the droplets run different releases`
    : skipped.length > 0
      ? `${verb} ${r.name} on group ${r.group} in ${took}, except ${skipped.join(', ')} (could not be asked): ${rollingBack ? `${skipped.length === 1 ? 'it' : 'they'} may still run what that deploy put there` : 'the droplets run different releases'}`
      : `${verb} ${r.name} on every droplet of group ${r.group} (${r.droplets.length}) in ${took}`;
  // A rollback's failed copy to a member with no earlier release: another rollback would find nothing to undo there.
  const copyFailed = rollingBack && r.droplets.some((d) => d.outcome === 'failed' && d.from === null);
  const tail = r.ok ? [] : [copyFailed ? `  \`plumb group sync ${r.group}\` gives the droplets that failed the release the others run` : `  \`plumb rollback ${r.name} --group ${r.group}\` puts back what each droplet ran before`];
  return [head, ...lines, ...tail].join('\n');
}
