import { access, stat } from 'node:fs/promises';
import { log } from '../log.js';
import { ensureApiAccount, openRelease } from '../system/api-account.js';
import { layout } from '../system/layout.js';
import { unitState } from '../system/systemd.js';
import type { StateStore } from '../state.js';
import type { OpContext } from './context.js';
import { scale } from './releases.js';
import { applyRouting, freeFrontPort } from './routing.js';
import { ensureUnit } from './workers.js';

/**
 * On start, the agent makes the droplet match its state: each API's user and directories, its
 * releases opened for writing beside the code, units, the nftables map (which does not survive a
 * reboot) and nginx's config are put in place again, files written only where they differ, so a
 * restart changes nothing that serves, and a lost or hand-edited file comes back. An API from
 * before front ports existed gets one here.
 */
export async function reconcile(state: StateStore): Promise<void> {
  const { apis, forward } = state.get();
  if (Object.keys(apis).length === 0 && forward === null) return;
  if (!(await access('/usr/sbin/nginx').then(() => true, () => false))) return;
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
  const nginx = await applyRouting(next);
  log.info('reconciled', { apis: Object.keys(apis).length, nginx });
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
  const { pid } = await unitState(unit).catch(() => ({ pid: null }));
  if (pid === null) return null;
  return stat(`/proc/${pid}`).then((st) => st.uid, () => null);
}
