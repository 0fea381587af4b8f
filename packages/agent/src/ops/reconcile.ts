import { access } from 'node:fs/promises';
import { log } from '../log.js';
import { renderNginx } from '../render/nginx.js';
import { applyNginx } from '../system/nginx.js';
import type { StateStore } from '../state.js';
import { nginxModel } from './nginx-model.js';
import { ensureUnit } from './workers.js';

/**
 * On start, the agent makes the droplet match its state: units and nginx's config are rendered
 * again and written only where they differ, so a restart changes nothing that serves, and a lost
 * or hand-edited file comes back.
 */
export async function reconcile(state: StateStore): Promise<void> {
  const { apis, forward } = state.get();
  if (Object.keys(apis).length === 0 && forward === null) return;
  if (!(await access('/usr/sbin/nginx').then(() => true, () => false))) return;
  for (const api of Object.values(apis)) await ensureUnit(api.name, api.memoryMax);
  const result = await applyNginx(renderNginx(nginxModel(state.get())));
  log.info('reconciled', { apis: Object.keys(apis).length, nginx: result });
}
