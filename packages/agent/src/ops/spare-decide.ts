import { BOOT_ROUTING_POLL_MS, HEALTH_TIMEOUT_MS, pollUntil } from '@plumb/shared';
import { log } from '../log.js';
import { liveEnv, liveRelease, sparePolicyOf, type ApiRecord } from '../state.js';
import { apiLock, type OpContext } from './context.js';
import { isHealthy, probe } from './health.js';
import { startNextSpare } from './rollout.js';
import { fitOf, inTurn, keepSpare, noSpare, spareLoaded, spareUndecided, stopSpare, type SpareFit } from './spare.js';

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
      // Not over a reason a later deploy's decision gave, nor for an API removed meanwhile.
      if (!pending.superseded() && ctx.state.get().apis[name]) noSpare(name, `it could not start: ${err.message.slice(0, 120)}`);
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
 * rollback meanwhile: the release rolled back to). Only once every API's workers answer (after a
 * reboot all start at once, and R still loading would look like free memory to auto) and the
 * API's drains (resumeDrains) are over; then one API at a time, each spare let load before the
 * next starts (at most twice the API's cold start: spareLoaded), so that at most one spare loads
 * at once. Not for an API removed meanwhile, with no live release, whose workers did not answer,
 * nor when a deploy asked for a decision meanwhile (it decides). Settles when all are decided.
 */
export function resumeSpares(ctx: OpContext, drained: (name: string) => Promise<unknown>): Promise<void> {
  let queue: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work);
    queue = next.catch(() => undefined);
    return next;
  };
  const names = Object.keys(ctx.state.get().apis);
  const answered = new Map(names.map((name) => [name, workersAnswer(name, ctx)] as const));
  const booted = Promise.all(answered.values());
  return Promise.all(
    names.map(async (name) => {
      const answers = await answered.get(name)!;
      const live = (api: ApiRecord, superseded: boolean) => {
        const release = liveRelease(api);
        if (!release || superseded) return undefined;
        if (answers) return fitOf(release, api.memoryMax);
        noSpare(name, 'its workers did not answer as the agent started: the next deploy decides');
        return undefined;
      };
      const current = ctx.state.get().apis[name]?.current;
      if (current === undefined) return;
      // Let this API's spare load before the next API's turn.
      const thenLoaded = <T>(work: () => Promise<T>) => oneAtATime(async () => {
        const done = await work();
        await spareLoaded(name);
        return done;
      });
      await decideBehind(name, current, ctx, Promise.all([drained(name), booted]), live, thenLoaded);
    }),
  ).then(() => undefined);
}

/**
 * Whether the API's workers answer as its health gate wants, within its health timeout (read
 * anew on each look: a deploy, rollback or scale meanwhile moves them); false when they did not,
 * and at once when the API is gone.
 */
async function workersAnswer(name: string, ctx: OpContext): Promise<boolean> {
  const timeoutMs = ctx.state.get().apis[name]?.healthTimeoutMs;
  const answered = await pollUntil(
    async () => {
      const api = ctx.state.get().apis[name];
      if (!api) return true;
      const statuses = await Promise.all(api.workers.map((w) => probe(w.port, api.healthPath ?? '/')));
      return statuses.every((status) => isHealthy(status, api.healthPath)) ? true : undefined;
    },
    { timeoutMs: timeoutMs ?? HEALTH_TIMEOUT_MS, intervalMs: BOOT_ROUTING_POLL_MS },
  );
  return answered === true;
}
