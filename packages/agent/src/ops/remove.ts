import { rm } from 'node:fs/promises';
import type { RemoveResult } from '@plumb/shared';
import { events } from '../monitor/events.js';
import { removeApiUser } from '../system/api-account.js';
import { layout } from '../system/layout.js';
import { apiLock, type OpContext } from './context.js';
import { forgetCheck } from './packages.js';
import { changeRouting, requireApi } from './routing.js';
import { stopSpare } from './spare.js';
import { removeUnit, retireWorker } from './workers.js';

/**
 * plumber's do_remove_api(): nginx stops routing to it first, then its workers and its spare
 * stop, its unit and its last package check go, and its files and system user unless the files
 * are kept. Apart from routing.ts, which packages.ts imports (requireApi).
 */
export async function remove(name: string, keepFiles: boolean, ctx: OpContext): Promise<RemoveResult> {
  return ctx.locks.with(apiLock(name), async () => {
    const api = requireApi(ctx.state.get(), name);
    const wasForwarded = ctx.state.get().forward === name;
    await changeRouting(ctx, (s) => {
      const { [name]: _removed, ...apis } = s.apis;
      return { ...s, apis, forward: s.forward === name ? null : s.forward };
    });
    for (const worker of [...api.workers, ...api.draining]) await retireWorker(name, worker.port);
    await stopSpare(name, { forget: true });
    await removeUnit(name);
    await forgetCheck(name, ctx);
    if (!keepFiles) {
      await rm(layout.apiDir(name), { recursive: true, force: true });
      // Kept with kept files, which it owns: deployed again, the API finds them as its own.
      await removeApiUser(name);
    }
    events.record({ kind: 'remove', api: name, detail: keepFiles ? 'removed; its files are kept' : 'removed with its files' });
    return { name, keptFiles: keepFiles, wasForwarded };
  });
}
