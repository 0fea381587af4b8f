import type { RequestHandler } from 'express';
import { bearerToken } from './auth.js';
import { tooManyRequests } from './errors.js';

/** DigitalOcean's hourly quota per token (it also has 250/minute, which the lab does not model). */
export const RATE_LIMIT_PER_HOUR = 5_000;
const WINDOW_S = 3_600;

interface Window {
  /** Unix seconds. */
  resetAt: number;
  remaining: number;
}

export class RateLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(readonly limit: number = RATE_LIMIT_PER_HOUR) {}

  /** Counts one request for `token`; `undefined` once its quota for the window is spent. */
  consume(token: string, nowS: number): Window | undefined {
    let window = this.windows.get(token);
    if (window === undefined || nowS >= window.resetAt) {
      window = { resetAt: nowS + WINDOW_S, remaining: this.limit };
      this.windows.set(token, window);
    }
    if (window.remaining === 0) return undefined;
    window.remaining -= 1;
    return { ...window };
  }

  /** What a request that is not counted sees (an unknown token's fresh window). */
  untouched(nowS: number): Window {
    return { resetAt: nowS + WINDOW_S, remaining: this.limit };
  }

  retryAfter(token: string, nowS: number): number {
    return Math.max(1, (this.windows.get(token)?.resetAt ?? nowS) - nowS);
  }
}

/**
 * Sets ratelimit-* on every /v2 response, errors included, as DigitalOcean does. Only requests with
 * a known token are counted: the lab has no per-address quota for anonymous callers.
 */
export function rateLimit(limiter: RateLimiter, tokens: ReadonlySet<string>): RequestHandler {
  return (req, res, next) => {
    const nowS = Math.floor(Date.now() / 1000);
    const setHeaders = (w: Window) =>
      res.set({
        'ratelimit-limit': String(limiter.limit),
        'ratelimit-remaining': String(w.remaining),
        'ratelimit-reset': String(w.resetAt),
      });
    const token = bearerToken(req);
    if (token === undefined || !tokens.has(token)) {
      setHeaders(limiter.untouched(nowS));
      return next();
    }
    const window = limiter.consume(token, nowS);
    if (window !== undefined) {
      setHeaders(window);
      return next();
    }
    const retryAfter = limiter.retryAfter(token, nowS);
    setHeaders({ remaining: 0, resetAt: nowS + retryAfter });
    next(tooManyRequests(retryAfter));
  };
}
