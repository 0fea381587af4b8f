import { access } from 'node:fs/promises';
import { log } from '../log.js';
import type { StateStore } from '../state.js';
import { applyRouting, freeFrontPort } from './routing.js';
import { ensureUnit } from './workers.js';

/**
 * On start, the agent makes the droplet match its state: units, the nftables map (which does not
 * survive a reboot) and nginx's config are put in place again, files written only where they
 * differ, so a restart changes nothing that serves, and a lost or hand-edited file comes back.
 * An API from before front ports existed gets one here.
 */
export async function reconcile(state: StateStore): Promise<void> {
  const { apis, forward } = state.get();
  if (Object.keys(apis).length === 0 && forward === null) return;
  if (!(await access('/usr/sbin/nginx').then(() => true, () => false))) return;
  for (const api of Object.values(apis)) await ensureUnit(api.name, api.memoryMax);
  let next = state.get();
  for (const api of Object.values(next.apis)) {
    if (api.frontPort === undefined) next = { ...next, apis: { ...next.apis, [api.name]: { ...api, frontPort: freeFrontPort(next) } } };
  }
  const nginx = await applyRouting(next);
  if (next !== state.get()) await state.update(() => next);
  log.info('reconciled', { apis: Object.keys(apis).length, nginx });
}
