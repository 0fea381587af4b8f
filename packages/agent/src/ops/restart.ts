import { FAILED_DEPLOY_LOG_LINES, type RestartResult } from '@plumb/shared';
import { lastLines } from '../system/journal.js';
import { layout } from '../system/layout.js';
import * as systemd from '../system/systemd.js';
import { apiLock, StepError, type OpContext } from './context.js';
import { waitHealthy } from './health.js';
import { requireApi } from './routing.js';

/** `systemctl restart` of each worker in turn, each waited for before the next (with several workers, no gap). */
export async function restart(name: string, ctx: OpContext): Promise<RestartResult> {
  return ctx.locks.with(apiLock(name), async () => {
    const started = Date.now();
    const api = requireApi(ctx.state.get(), name);
    for (const worker of api.workers) {
      const unit = layout.instanceUnit(name, worker.port);
      ctx.progress('restarting', unit);
      await systemd.restart(unit);
      const outcome = await waitHealthy(unit, worker.port, api.healthPath, api.healthTimeoutMs);
      if (!outcome.ok) throw new StepError('RESTART_FAILED', 'health check', `${unit} did not come back: ${outcome.detail}`, await lastLines(unit, FAILED_DEPLOY_LOG_LINES));
    }
    return { name, workers: api.workers.length, tookMs: Date.now() - started };
  });
}
