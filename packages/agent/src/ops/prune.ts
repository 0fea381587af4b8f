import { rm } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { crashPoint } from '../crash-point.js';
import { removeManifest } from '../bundle/delta.js';
import { log } from '../log.js';
import { events } from '../monitor/events.js';
import type { ApiRecord, Release } from '../state.js';
import { layout } from '../system/layout.js';
import { apiLock, SHARED, type OpContext } from './context.js';
import { pruneLibraries } from './packages.js';

/**
 * The releases a prune takes away: all but the API's newest `keepReleases`, never the live one
 * (a rollback may have made an old one live) nor one whose previous workers are still draining
 * (it is their working directory). All of them, however many: a prune that never ran (the agent
 * was killed after a deploy answered) is caught up by the next.
 */
export function releasesToPrune(api: Pick<ApiRecord, 'releases' | 'keepReleases' | 'current' | 'draining'>): Release[] {
  if (api.releases.length <= api.keepReleases) return [];
  const recent = new Set(api.releases.slice(-api.keepReleases));
  const inUse = new Set([api.current, ...api.draining.map((w) => w.release)]);
  return api.releases.filter((r) => !recent.has(r) && !inUse.has(r.id));
}

/**
 * Takes the API's old releases off the state, then off the disk with their file lists and the R
 * library generations no kept release names. Reads the state as it is now, under the shared lock:
 * whatever ran since the deploy that asked for it (a rollback, a remove) counts. Returns the ids taken.
 */
export async function pruneReleases(name: string, ctx: OpContext): Promise<string[]> {
  return ctx.locks.with(SHARED, async () => {
    const api = ctx.state.get().apis[name];
    if (!api) return [];
    const drop = releasesToPrune(api);
    if (drop.length === 0) return [];
    const keep = api.releases.filter((r) => !drop.includes(r));
    // The state first: an agent killed in the middle leaves directories it no longer lists, which
    // it removes when it starts again (reconcile.ts), never a listed release without its files.
    await ctx.state.update((s) => ({ ...s, apis: { ...s.apis, [name]: { ...api, releases: keep } } }));
    for (const r of drop) {
      await rm(layout.releaseDir(name, r.id), { recursive: true, force: true });
      await removeManifest(name, r.id);
    }
    await pruneLibraries(name, keep);
    return drop.map((r) => r.id);
  });
}

/**
 * After a deploy, behind its answer: nobody waits for old releases to go (session 10 measured the
 * prune at 72-79 ms of every deploy). Queued on the API's lock while the deploy still holds it, so
 * it runs once that deploy is done and never beside another operation of the API (the next
 * deploy's hard-link sources, a rollback's target); it starts a turn of the event loop later, so
 * the deploy's answer is on the socket first. A prune that fails changes nothing a user needs now,
 * but old releases then pile up on the disk: it is logged and recorded as a `prune-failed` event
 * (plumb status), and the next deploy of the API tries again.
 */
export function pruneAfterAnswer(name: string, ctx: OpContext): void {
  void ctx.locks
    .with(apiLock(name), async () => {
      await nextTurn();
      crashPoint('before-prune');
      const started = performance.now();
      return { dropped: await pruneReleases(name, ctx), tookMs: performance.now() - started };
    })
    .then(
      ({ dropped, tookMs }) => {
        // took_ms: what the prune cost off the answer's path (bench/deploy.ts --prune-only reads it).
        if (dropped.length > 0) log.info('old releases pruned', { api: name, releases: dropped.join(' '), took_ms: Math.round(tookMs) });
      },
      (err: Error) => {
        log.warn('could not prune old releases', { api: name, error: err.message });
        events.record({ kind: 'prune-failed', api: name, detail: `old releases were not removed (${err.message}); the next deploy of ${name} tries again` });
      },
    );
}
