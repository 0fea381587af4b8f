import { DEFAULT_WORKERS, type RestartResult } from '@plumb/shared';
import { events } from '../monitor/events.js';
import { apiLock, type OpContext } from './context.js';
import { replaceWorkers } from './releases.js';
import { requireApi } from './routing.js';

/**
 * New R processes for the API: a fresh set of workers for the live release starts next to the
 * old one and takes over once it answers, as in a deploy, so no request is lost even with one
 * worker; the old ones drain. (`systemctl restart 'plumber-NAME@*'` by hand restarts in place.)
 */
export async function restart(name: string, wait: boolean, ctx: OpContext): Promise<RestartResult> {
  return ctx.locks.with(apiLock(name), async () => {
    const started = Date.now();
    const api = requireApi(ctx.state.get(), name);
    const { ports, drain } = await replaceWorkers(api, api.workers.length || DEFAULT_WORKERS, wait, ctx);
    for (const port of ports) events.record({ kind: 'restarted', by: 'operator', api: name, port, detail: `plumb restart: a new R process (previous workers: ${drain.ports.join(', ') || 'none'})` });
    return { name, workers: ports.length, tookMs: Date.now() - started, drain };
  });
}
