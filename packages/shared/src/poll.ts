import { setTimeout as sleep } from 'node:timers/promises';

export interface PollOptions {
  /** How long to keep asking, from the call. */
  timeoutMs: number;
  /** The pause between two probes; a function of the attempt (0, 1, …) for a backoff. */
  intervalMs: number | ((attempt: number) => number);
  /** Stops waiting early: the poll then ends as if the deadline had passed. */
  signal?: AbortSignal;
  /** Time and pauses, for unit tests that must not wait (the DigitalOcean client's policy); the real clock otherwise. */
  clock?: Clock;
}

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

/**
 * The one way plumb waits for something (a worker's answer, a drain, cloud-init, a lock, a
 * droplet): asks `probe` until it returns a value other than `undefined`, and returns that value;
 * returns `undefined` once `timeoutMs` has passed, so each caller throws its own typed error.
 * The probe runs at least once, and once more at the deadline: a pause never runs past it.
 */
export async function pollUntil<T>(probe: (attempt: number) => Promise<T | undefined> | T | undefined, opts: PollOptions): Promise<T | undefined> {
  const now = opts.clock ? () => opts.clock!.now() : Date.now;
  const deadline = now() + opts.timeoutMs;
  for (let attempt = 0; ; attempt++) {
    const value = await probe(attempt);
    if (value !== undefined) return value;
    const left = deadline - now();
    if (left <= 0 || opts.signal?.aborted) return undefined;
    const pause = Math.min(typeof opts.intervalMs === 'number' ? opts.intervalMs : opts.intervalMs(attempt), left);
    if (opts.clock) await opts.clock.sleep(pause);
    else if (!(await sleep(pause, true, opts.signal ? { signal: opts.signal } : {}).catch(() => false))) return undefined;
  }
}

/**
 * Waits for every one of `work` to settle, then fails with the first failure, if any: unlike
 * Promise.all, none is left running behind a failure (a clean-up would race it, or a late write
 * land over a later one).
 */
export async function allDone(work: Iterable<Promise<unknown>>): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
