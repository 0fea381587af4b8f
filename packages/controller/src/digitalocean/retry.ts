import { setTimeout as delay } from 'node:timers/promises';
import { isAxiosError } from 'axios';
// dots-wrapper is CommonJS: its axios instance has the types axios declares for require().
import type { AxiosInstance, InternalAxiosRequestConfig } from 'axios' with { 'resolution-mode': 'require' };

/** Tries of one request, the first included. */
export const RETRY_MAX_ATTEMPTS = 5;
/** The first backoff; each later one doubles, up to RETRY_MAX_DELAY_MS. */
export const RETRY_BASE_DELAY_MS = 500;
export const RETRY_MAX_DELAY_MS = 8_000;
/**
 * All the waiting for one request together. A 429 whose reset is further away than what is left
 * of this ends the retries at once: the person at the terminal is told when to come back instead.
 */
export const RETRY_MAX_TOTAL_WAIT_MS = 60_000;

/** Statuses DigitalOcean answers when it is failing for a moment. */
const TRANSIENT_STATUSES: ReadonlySet<number> = new Set([500, 502, 503, 504]);
/** Connection failures worth another try (ECONNABORTED is axios's own request timeout). */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'ETIMEDOUT', 'ECONNABORTED', 'EPIPE', 'EAI_AGAIN']);
/** Methods a server may receive twice without a second effect. */
const REPEATABLE_METHODS: ReadonlySet<string> = new Set(['get', 'head', 'options', 'put', 'delete']);

export interface RetryLimits {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  maxTotalWaitMs: number;
}

/** Time and chance, injectable so tests neither wait nor depend on luck. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
  /** In [0, 1), for jitter. */
  random(): number;
}

export type RetryPolicy = RetryLimits & Clock;

export const defaultRetryLimits: RetryLimits = {
  maxAttempts: RETRY_MAX_ATTEMPTS,
  baseDelayMs: RETRY_BASE_DELAY_MS,
  maxDelayMs: RETRY_MAX_DELAY_MS,
  maxTotalWaitMs: RETRY_MAX_TOTAL_WAIT_MS,
};

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms) => {
    await delay(ms);
  },
  random: () => Math.random(),
};

/**
 * Why a request failed, as far as trying again goes:
 * - `rate-limited`: a 429, which DigitalOcean answers before doing anything, so the request can be
 *   sent again as it is; `waitMs` is how long its headers say to wait;
 * - `unavailable` (5xx) and `network` (reset, timed out): the request may or may not have taken
 *   effect, so only a request that is safe to repeat is simply sent again;
 * - `final`: anything else; another try would get the same answer.
 */
export type Failure =
  | { kind: 'rate-limited'; waitMs: number | undefined }
  | { kind: 'unavailable'; status: number }
  | { kind: 'network'; code: string }
  | { kind: 'final' };

type Headers = Readonly<Record<string, unknown>>;

export function header(headers: Headers | undefined, name: string): string | undefined {
  const value = headers?.[name];
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

/**
 * How long a 429 says to wait: `Retry-After` (seconds, or an HTTP date), else `ratelimit-reset`
 * (unix seconds, when the oldest counted request expires). Undefined when neither says.
 */
export function rateLimitWaitMs(headers: Headers | undefined, nowMs: number): number | undefined {
  const retryAfter = header(headers, 'retry-after')?.trim();
  if (retryAfter !== undefined && retryAfter !== '') {
    if (/^\d+$/.test(retryAfter)) return Number(retryAfter) * 1000;
    const at = Date.parse(retryAfter);
    if (!Number.isNaN(at)) return Math.max(0, at - nowMs);
  }
  const reset = header(headers, 'ratelimit-reset')?.trim();
  if (reset !== undefined && /^\d+$/.test(reset)) return Math.max(0, Number(reset) * 1000 - nowMs);
  return undefined;
}

export function classify(err: unknown, nowMs: number): Failure {
  if (!isAxiosError(err)) return { kind: 'final' };
  const { response } = err;
  if (response === undefined) {
    return err.code !== undefined && TRANSIENT_CODES.has(err.code) ? { kind: 'network', code: err.code } : { kind: 'final' };
  }
  if (response.status === 429) return { kind: 'rate-limited', waitMs: rateLimitWaitMs(response.headers, nowMs) };
  if (TRANSIENT_STATUSES.has(response.status)) return { kind: 'unavailable', status: response.status };
  return { kind: 'final' };
}

/** A failure that may hide a success: the request may have reached DigitalOcean and taken effect. */
export const mayHaveTakenEffect = (failure: Failure): boolean => failure.kind === 'unavailable' || failure.kind === 'network';

/** Exponential backoff with "equal jitter": half fixed, half random, so clients spread out but never retry at once. */
export function backoffMs(policy: RetryPolicy, retry: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.round(ceiling / 2 + policy.random() * (ceiling / 2));
}

/** Thrown when a retryable failure persists past the attempts or the wait allowed; `cause` is the last failure. */
export class RetriesExhausted extends Error {
  override readonly name = 'RetriesExhausted';
  constructor(
    override readonly cause: unknown,
    readonly failure: Exclude<Failure, { kind: 'final' }>,
    readonly attempts: number,
    readonly waitedMs: number,
  ) {
    super(`gave up after ${attempts} attempt(s): ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

export interface RetryHooks<T> {
  /**
   * Runs after the wait and before try number `attempt`. A value it returns is taken as the result
   * and nothing more is sent; what it throws ends the retries.
   */
  beforeRetry?(failure: Failure, attempt: number): Promise<T | undefined>;
}

/** The one retry loop: every retry in the DigitalOcean client goes through here. */
export async function retrying<T>(
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
  hooks: RetryHooks<T> = {},
): Promise<T> {
  let waitedMs = 0;
  for (let n = 1; ; n += 1) {
    try {
      return await attempt(n);
    } catch (err) {
      const failure = classify(err, policy.now());
      if (failure.kind === 'final') throw err;
      const waitMs = (failure.kind === 'rate-limited' ? failure.waitMs : undefined) ?? backoffMs(policy, n);
      if (n >= policy.maxAttempts || waitedMs + waitMs > policy.maxTotalWaitMs) {
        throw new RetriesExhausted(err, failure, n, waitedMs);
      }
      await policy.sleep(waitMs);
      waitedMs += waitMs;
      const settled = await hooks.beforeRetry?.(failure, n + 1);
      if (settled !== undefined) return settled;
    }
  }
}

type ResentConfig = InternalAxiosRequestConfig & { plumbResent?: true };

/**
 * Retries every request that is safe to send twice, once, for every caller of `client`.
 * A request that is not (POST) comes back to its caller failed: only the caller knows how to find
 * out whether it took effect before sending it again (see DigitalOcean.createDroplet).
 */
export function retryRepeatableRequests(client: AxiosInstance, policy: RetryPolicy): void {
  client.interceptors.response.use(undefined, (error: unknown) => {
    const config: ResentConfig | undefined = isAxiosError(error) ? error.config : undefined;
    // A resent request's own failure goes back to the loop below that resent it.
    if (config === undefined || config.plumbResent === true || !REPEATABLE_METHODS.has(config.method ?? 'get')) {
      return Promise.reject(error);
    }
    const resend: ResentConfig = { ...config, plumbResent: true };
    return retrying(policy, (n) => (n === 1 ? Promise.reject(error) : client.request(resend)));
  });
}
