import { BOOT_ROUTING_POLL_MS, pollUntil } from '@plumb/shared';
import { log } from '../log.js';
import { liveEnv, liveRelease, sparePolicyOf, type ApiRecord } from '../state.js';
import { apiLock, type OpContext } from './context.js';
import { isHealthy, probe } from './health.js';
import { startNextSpare } from './rollout.js';
import { fitOf, inTurn, keepSpare, noSpare, spareUndecided, stopSpare, type SpareFit } from './spare.js';

/**
 * When an API's warm spare is decided: behind a deploy's answer, and for every API when the agent
 * starts. Each decision runs on the API's lock (a deploy of it waits, as for any operation, and
 * finds the spare started or not, never half-way: a spare still loading is not used), once the
 * API's previous workers have stopped (their memory is back, and a spare loading beside a big
 * draining worker could push the droplet to the OOM killer), and one API at a time (inTurn: each
 * decision sees the memory the spares before it take).
 */

/**
 * The API's spare decided for `release` (live as it is asked for) when `after` settles; `fitFor`
 * says what it loads for the API as it is then (under its lock), or undefined: not this decision's
 * to make. None when one for `release` is queued already (spareUndecided): that one decides.
 * `oneAtATime` queues it before it takes the lock (the agent's start, where every API would
 * otherwise hold its lock while waiting its turn).
 */
async function decideBehind(name: string, release: string, ctx: OpContext, after: Promise<unknown>, fitFor: (api: ApiRecord, superseded: boolean) => SpareFit | undefined, oneAtATime: <T>(work: () => Promise<T>) => Promise<T> = (work) => work()): Promise<void> {
  const pending = spareUndecided(name, release);
  if (!pending) return;
  return after
    .then(() => oneAtATime(() => ctx.locks.with(apiLock(name), () => inTurn(async () => {
      const api = ctx.state.get().apis[name];
      const fit = api && fitFor(api, pending.superseded());
      if (api && fit) await decide(name, api, fit, ctx);
    }))))
    .catch((err: Error) => {
      log.warn('could not start a warm spare', { api: name, error: err.message });
      noSpare(name, `it could not start: ${err.message.slice(0, 120)}`);
    })
    .finally(pending.decided);
}

/** The API's next spare if its policy keeps one (spare-policy.ts), loading `fit`; else none, and why not for plumb status. */
async function decide(name: string, api: ApiRecord, fit: SpareFit, ctx: OpContext): Promise<void> {
  const decision = await keepSpare(name, sparePolicyOf(api), api.workers.map((w) => w.port));
  if (!decision.keep) {
    await stopSpare(name);
    log.info('no warm spare', { api: name, why: decision.why });
    return;
  }
  await startNextSpare(name, fit, { env: liveEnv(api), secrets: api.secrets }, ctx);
}

/**
 * After a deploy's answer, queued behind it on the API's lock (the answer does not wait), once
 * `drained`: the API's next spare, loading `fit` (what `release`, the live release, loads). A
 * deploy queued before it has made `release` old by then: that deploy decides instead. One
 * decision per release: one queued for it already decides (a deploy that failed just after one
 * that answered).
 */
export function nextSpareAfterAnswer(name: string, release: string, fit: SpareFit, ctx: OpContext, drained: Promise<unknown> = Promise.resolve()): void {
  void decideBehind(name, release, ctx, drained, (api) => (api.current === release ? fit : undefined));
}

/**
 * When the agent starts, once reconcile has stopped the spares of its last run: every API's spare
 * decided as a deploy's answer would, for its live release as it is when its turn comes (a
 * rollback meanwhile: the release rolled back to), once `drained(name)` (the drains resumeDrains
 * picked up) settles and its workers answer. Not for an API removed meanwhile or with no live
 * release, nor when a deploy asked for a decision meanwhile (it decides). Settles when all are decided.
 */
export function resumeSpares(ctx: OpContext, drained: (name: string) => Promise<unknown>): Promise<void> {
  let queue: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work);
    queue = next.catch(() => undefined);
    return next;
  };
  const live = (api: ApiRecord, superseded: boolean) => {
    const release = liveRelease(api);
    return release && !superseded ? fitOf(release, api.memoryMax) : undefined;
  };
  return Promise.all(Object.values(ctx.state.get().apis).map((api) => decideBehind(api.name, api.current, ctx, Promise.all([drained(api.name), workersAnswer(api)]), live, oneAtATime))).then(() => undefined);
}

/**
 * Settles once each of the API's workers answers as its health gate wants, or after its health
 * timeout: a deploy's spare is decided once its workers passed the gate, and after a reboot they
 * start beside the agent (R loading, its memory not taken yet: auto would count it free).
 */
async function workersAnswer(api: ApiRecord): Promise<void> {
  const answer = async () => (await Promise.all(api.workers.map((w) => probe(w.port, api.healthPath ?? '/')))).every((status) => isHealthy(status, api.healthPath));
  await pollUntil(async () => ((await answer()) ? true : undefined), { timeoutMs: api.healthTimeoutMs, intervalMs: BOOT_ROUTING_POLL_MS });
}
