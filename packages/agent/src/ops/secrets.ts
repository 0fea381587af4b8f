import { DEFAULT_WORKERS, PlumbError, SECRETS_MAX, type SecretsResult, type SecretsSetResult } from '@plumb/shared';
import { log } from '../log.js';
import { liveEnv, liveRelease } from '../state.js';
import { events } from '../monitor/events.js';
import { apiLock, type OpContext } from './context.js';
import { replaceWorkers } from './releases.js';
import { startNextSpare } from './rollout.js';
import { requireApi } from './routing.js';
import { fitOf, noSpare, sameFit, staleSpare, stopSpare } from './spare.js';

/** The names of an API's secrets, sorted; their values stay in the root-only state and env files. */
export function secrets(name: string, ctx: OpContext): SecretsResult {
  return { name, keys: Object.keys(requireApi(ctx.state.get(), name).secrets).sort() };
}

/**
 * Sets and unsets an API's secrets. As fly's `secrets set` does, a change reaches the workers
 * at once by a rolling restart (restart.ts): new workers with the new environment pass the
 * health gate before traffic moves, so no request fails; if they do not, nothing changes.
 * The API's warm spare, started with the old secrets, starts again with the new ones, so the next
 * deploy can still take it. Values are never logged nor recorded in events: names only.
 */
export async function setSecrets(req: { name: string; set: Record<string, string>; unset: string[]; wait: boolean }, ctx: OpContext): Promise<SecretsSetResult> {
  return ctx.locks.with(apiLock(req.name), async () => {
    const started = Date.now();
    const api = requireApi(ctx.state.get(), req.name);
    const missing = req.unset.filter((key) => !(key in api.secrets));
    if (missing.length > 0) throw new PlumbError('SECRET_UNKNOWN', `${req.name} has no secret ${missing.join(', ')}`, `see \`plumb secrets list ${req.name}\``);
    const next = { ...api.secrets, ...req.set };
    for (const key of req.unset) delete next[key];
    if (Object.keys(next).length > SECRETS_MAX) throw new PlumbError('TOO_MANY_SECRETS', `${req.name} would have ${Object.keys(next).length} secrets; at most ${SECRETS_MAX}`, 'unset some first');
    const set = Object.keys(req.set).sort();
    const unset = [...req.unset].sort();
    const changed = set.some((key) => api.secrets[key] !== req.set[key]) || unset.length > 0;
    const keys = Object.keys(next).sort();
    if (!changed) return { name: req.name, keys, set, unset, restarted: false, workers: 0, tookMs: Date.now() - started, drain: { ports: [], timeoutMs: api.drainTimeoutMs, stopped: true, cut: 0 } };
    const { ports, drain } = await replaceWorkers(api, api.workers.length || DEFAULT_WORKERS, req.wait, ctx, next);
    const vars = { env: liveEnv(api), secrets: next };
    const fit = staleSpare(req.name, vars);
    // A spare of another release than the live one (a rollback since) goes: the next deploy decides.
    if (fit && !sameFit(fit, fitOf(liveRelease(api), api.memoryMax))) {
      await stopSpare(req.name);
      noSpare(req.name, "it had loaded another release's packages than the live one's: the next deploy decides");
    }
    // startNextSpare stops the stale one first.
    else if (fit) await startNextSpare(req.name, fit, vars, ctx).catch((err: Error) => log.warn('could not start a warm spare', { api: req.name, error: err.message }));
    const what = [set.length ? `set ${set.join(', ')}` : '', unset.length ? `unset ${unset.join(', ')}` : ''].filter(Boolean).join('; ');
    log.info('secrets changed', { api: req.name, set: set.join(','), unset: unset.join(',') });
    for (const port of ports) events.record({ kind: 'restarted', by: 'operator', api: req.name, port, detail: `plumb secrets: ${what} (previous workers: ${drain.ports.join(', ') || 'none'})` });
    return { name: req.name, keys, set, unset, restarted: true, workers: ports.length, tookMs: Date.now() - started, drain };
  });
}
