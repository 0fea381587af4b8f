import { access, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { log } from '../log.js';
import { events } from '../monitor/events.js';
import type { AgentState } from '../state.js';
import { ensureApiAccount, openRelease } from '../system/api-account.js';
import { layout, workerUnits } from '../system/layout.js';
import * as systemd from '../system/systemd.js';
import type { StateStore } from '../state.js';
import type { OpContext } from './context.js';
import { scale } from './releases.js';
import { applyRouting, freeFrontPort } from './routing.js';
import { forgetCutDeploys } from './deploy.js';
import { pruneLibraries } from './packages.js';
import { ensureUnit, pointCurrent, retireWorker } from './workers.js';

/**
 * On start, the agent makes the droplet match its state: each API's user and directories, its
 * releases opened for writing beside the code, units, the nftables map (which does not survive a
 * reboot) and nginx's config are put in place again, files written only where they differ, so a
 * restart changes nothing that serves, and a lost or hand-edited file comes back. An API from
 * before front ports existed gets one here. Then what an agent killed in the middle of an
 * operation left is settled: a switch the state records is finished (its workers enabled, the
 * `current` link), one it does not record is undone (routing follows the state again), and
 * workers, env files, releases and R library generations the state does not list go.
 */
export async function reconcile(state: StateStore): Promise<void> {
  // No nginx: not a droplet plumb set up yet (cloud-init still installing), so nothing of plumb's runs.
  if (!(await access('/usr/sbin/nginx').then(() => true, () => false))) return;
  const { apis, forward } = state.get();
  for (const api of Object.values(apis)) {
    const account = await ensureApiAccount(api.name);
    for (const release of api.releases) {
      await openRelease(layout.releaseDir(api.name, release.id), account).catch((err: Error) => log.warn('could not open a release for writing', { api: api.name, release: release.id, error: err.message }));
    }
    await ensureUnit(api.name, api.memoryMax);
  }
  let next = state.get();
  for (const api of Object.values(next.apis)) {
    if (api.frontPort === undefined) next = { ...next, apis: { ...next.apis, [api.name]: { ...api, frontPort: freeFrontPort(next) } } };
  }
  // Kept before routing is applied: an API left without a front port would make every later
  // routing change fail, not only this one.
  if (next !== state.get()) await state.update(() => next);
  const nginx = Object.keys(apis).length === 0 && forward === null ? 'unchanged' : await applyRouting(next);
  // Only now that routing follows the state may what it does not list stop.
  const cut = [...(await removeOrphans(next)), ...(await forgetCutDeploys(next)), ...(await finishSwitches(next))];
  if (cut.length > 0) {
    log.warn('settled what an interrupted operation left', { detail: cut.join('; ') });
    events.record({ kind: 'operation-cut', detail: `an operation was cut (agent stopped in the middle); settled: ${cut.join('; ')}` });
  }
  log.info('reconciled', { apis: Object.keys(apis).length, nginx });
}

/** A switch the state records, cut before its workers were enabled or `current` pointed at the live release. */
async function finishSwitches(state: AgentState): Promise<string[]> {
  const done: string[] = [];
  const atBoot = await systemd.enabledAtBoot();
  for (const api of Object.values(state.apis)) {
    for (const worker of api.workers) {
      const unit = layout.instanceUnit(api.name, worker.port);
      if (atBoot.has(unit)) continue;
      await systemd.enable(unit);
      done.push(`enabled ${unit}`);
    }
    const live = layout.releaseDir(api.name, api.current);
    if ((await realpath(layout.currentLink(api.name)).catch(() => '')) !== live) {
      await pointCurrent(api.name, live);
      done.push(`${api.name} current -> ${api.current}`);
    }
  }
  return done;
}

/**
 * A warm spare's env file (renderSpareEnv): PLUMB_SPARE names its fifo. A spare still waiting when
 * the agent stopped is no cut operation: the agent keeps spares in memory only, and one left
 * behind is stopped as any worker the state does not list, without an event; the agent then
 * decides each API's spare again (spare-decide.ts resumeSpares). (A spare that had taken a release
 * has a worker's env file by then: a deploy was cut.)
 */
const isSpareEnv = (name: string, port: number) => readFile(layout.instanceEnvFile(name, port), 'utf8').then((text) => /^PLUMB_SPARE=/m.test(text), () => false);

/** Workers, their env files and release directories the state does not list: stopped and removed. */
async function removeOrphans(state: AgentState): Promise<string[]> {
  const removed: string[] = [];
  const spares: string[] = [];
  const listed = (name: string, port: number) => [...(state.apis[name]?.workers ?? []), ...(state.apis[name]?.draining ?? [])].some((w) => w.port === port);
  for (const unit of await systemd.unitsMatching(workerUnits.pattern, workerUnits.glob)) {
    const [, name = '', port = '0'] = workerUnits.pattern.exec(unit) ?? [];
    if (listed(name, Number(port))) continue;
    const spare = await isSpareEnv(name, Number(port));
    await retireWorker(name, Number(port));
    (spare ? spares : removed).push(`stopped ${unit}`);
  }
  for (const file of await readdir(layout.instancesDir).catch(() => [] as string[])) {
    const [, name = '', port = '0'] = /^([a-z][a-z0-9_-]*)@(\d+)\.env$/.exec(file) ?? [];
    if (name !== '' && listed(name, Number(port))) continue;
    const spare = name !== '' && (await isSpareEnv(name, Number(port)));
    await rm(path.join(layout.instancesDir, file), { force: true });
    (spare ? spares : removed).push(`removed ${file}`);
  }
  if (spares.length > 0) log.info('warm spares of the last agent run stopped', { detail: spares.join('; ') });
  for (const api of Object.values(state.apis)) {
    for (const entry of await readdir(layout.releasesDir(api.name)).catch(() => [] as string[])) {
      if (api.releases.some((r) => r.id === entry)) continue;
      await rm(path.join(layout.releasesDir(api.name), entry), { recursive: true, force: true });
      removed.push(`removed ${api.name} release ${entry}`);
    }
    removed.push(...(await pruneLibraries(api.name, api.releases)));
  }
  return removed;
}

/**
 * Workers started before each API had its own system user run as the shared user `plumber`.
 * Such an API is rolled out again on its live release, with as many workers (new ones as its
 * own user, the health gate, nginx switched, the old ones drained and stopped): the move drops
 * no request. If the new workers fail, the old ones keep serving and the next deploy tries again.
 */
export async function moveToApiUsers(ctx: OpContext): Promise<void> {
  for (const api of Object.values(ctx.state.get().apis)) {
    const account = await ensureApiAccount(api.name);
    const owners = await Promise.all(api.workers.map((w) => workerUid(layout.instanceUnit(api.name, w.port))));
    if (owners.every((uid) => uid === null || uid === account.uid)) continue;
    log.info('moving an api to its own user', { api: api.name, user: account.user });
    await scale(api.name, api.workers.length, false, ctx).then(
      () => log.info('api moved to its own user', { api: api.name, user: account.user }),
      (err: Error) => log.error('could not move an api to its own user; its workers keep running as before', { api: api.name, error: err.message }),
    );
  }
}

async function workerUid(unit: string): Promise<number | null> {
  const { pid } = await systemd.unitState(unit).catch(() => ({ pid: null }));
  if (pid === null) return null;
  return stat(`/proc/${pid}`).then((st) => st.uid, () => null);
}
