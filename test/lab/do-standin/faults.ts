import { setTimeout as sleep } from 'node:timers/promises';
import type { RequestHandler } from 'express';
import { ApiError, serverError, serviceUnavailable, tooManyRequests } from './errors.js';

export type FaultStatus = 429 | 500 | 503;
const faultStatuses: readonly number[] = [429, 500, 503];

/**
 * What a test asks for: the next `count` /v2 requests (only those with this `method` and `path`,
 * when given) wait `delayMs`, then fail with `status` if set.
 */
export interface FaultSpec {
  status?: FaultStatus;
  /** Only requests with this method, e.g. POST. */
  method?: string;
  /** Only requests for exactly this path, query excluded, e.g. /v2/droplets. */
  path?: string;
  count: number;
  /** Seconds, sent as Retry-After on a 429. */
  retryAfter?: number;
  delayMs?: number;
}

export interface PendingFault extends FaultSpec {
  remaining: number;
}

export const MAX_FAULT_COUNT = 10_000;
export const MAX_FAULT_DELAY_MS = 120_000;
export const MAX_RETRY_AFTER_S = 3_600;
/** Short, so tests that retry after a 429 stay fast. */
export const DEFAULT_RETRY_AFTER_S = 1;

export class FaultSpecError extends Error {
  override readonly name = 'FaultSpecError';
}

function intIn(body: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const value = body[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new FaultSpecError(`${key} must be an integer from ${min} to ${max}`);
  }
  return value;
}

export function parseFault(body: unknown): FaultSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new FaultSpecError('expected a JSON object like {"status":429,"count":1}');
  }
  const fields = body as Record<string, unknown>;
  const unknownKeys = Object.keys(fields).filter((k) => !['status', 'count', 'retryAfter', 'delayMs', 'method', 'path'].includes(k));
  if (unknownKeys.length > 0) throw new FaultSpecError(`unknown field(s): ${unknownKeys.join(', ')}`);

  const status = fields.status;
  if (status !== undefined && (typeof status !== 'number' || !faultStatuses.includes(status))) {
    throw new FaultSpecError(`status must be one of ${faultStatuses.join(', ')}`);
  }
  const count = intIn(fields, 'count', 1, MAX_FAULT_COUNT);
  if (count === undefined) throw new FaultSpecError('count is required');
  const retryAfter = intIn(fields, 'retryAfter', 0, MAX_RETRY_AFTER_S);
  if (retryAfter !== undefined && status !== 429) throw new FaultSpecError('retryAfter only applies to status 429');
  const delayMs = intIn(fields, 'delayMs', 0, MAX_FAULT_DELAY_MS);
  if (status === undefined && delayMs === undefined) throw new FaultSpecError('give a status, a delayMs, or both');

  const { method, path } = fields;
  if (method !== undefined && (typeof method !== 'string' || !/^(GET|POST|PUT|PATCH|DELETE)$/.test(method))) throw new FaultSpecError('method must be GET, POST, PUT, PATCH or DELETE');
  if (path !== undefined && (typeof path !== 'string' || !/^\/v2(\/[A-Za-z0-9_.-]+)*$/.test(path))) throw new FaultSpecError('path must be a /v2 path such as /v2/droplets');

  const spec: FaultSpec = { count };
  if (status !== undefined) spec.status = status as FaultStatus;
  if (method !== undefined) spec.method = method as string;
  if (path !== undefined) spec.path = path as string;
  if (retryAfter !== undefined) spec.retryAfter = retryAfter;
  if (delayMs !== undefined) spec.delayMs = delayMs;
  return spec;
}

/** Faults are served in the order they were added; each one covers `count` requests. */
export class Faults {
  private queue: PendingFault[] = [];

  add(spec: FaultSpec): void {
    this.queue.push({ ...parseFault(spec), remaining: spec.count });
  }

  clear(): void {
    this.queue = [];
  }

  pending(): PendingFault[] {
    return this.queue.map((f) => ({ ...f }));
  }

  /** Claims, for one request, the oldest fault that applies to it. */
  take(method: string, path: string): FaultSpec | undefined {
    const index = this.queue.findIndex((f) => (f.method === undefined || f.method === method) && (f.path === undefined || f.path === path));
    const fault = this.queue[index];
    if (fault === undefined) return undefined;
    fault.remaining -= 1;
    if (fault.remaining === 0) this.queue.splice(index, 1);
    const { remaining: _remaining, ...spec } = fault;
    return spec;
  }
}

function faultError(status: FaultStatus, retryAfter: number): ApiError {
  if (status === 500) return serverError();
  if (status === 503) return serviceUnavailable();
  const err = tooManyRequests(retryAfter);
  // What DigitalOcean sends when the quota is spent: nothing left until the reset.
  return new ApiError(err.status, err.id, err.message, {
    ...err.headers,
    'ratelimit-remaining': '0',
    'ratelimit-reset': String(Math.floor(Date.now() / 1000) + retryAfter),
  });
}

/** Runs before authentication: an injected fault stands for DigitalOcean's edge failing, whoever asks. */
export function injectFaults(faults: Faults): RequestHandler {
  return async (req, _res, next) => {
    const fault = faults.take(req.method, new URL(req.originalUrl, 'http://x').pathname);
    if (fault === undefined) return next();
    if (fault.delayMs !== undefined && fault.delayMs > 0) await sleep(fault.delayMs);
    if (fault.status === undefined) return next();
    next(faultError(fault.status, fault.retryAfter ?? DEFAULT_RETRY_AFTER_S));
  };
}
