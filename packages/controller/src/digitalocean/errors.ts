import { STATUS_CODES } from 'node:http';
import { DigitalOceanError, type DigitalOceanErrorCode, type DigitalOceanErrorDetails } from '@plumb/shared';
import { isAxiosError } from 'axios';
import { header, rateLimitWaitMs, RetriesExhausted } from './retry.js';

export const TOKENS_URL = 'https://cloud.digitalocean.com/account/api/tokens';
const STATUS_PAGE_URL = 'https://status.digitalocean.com';
const TOKEN_HINT = `Check DIGITALOCEAN_ACCESS_TOKEN: create a token with read and write scope at ${TOKENS_URL}`;

/** What the failed call was about, for the message. */
export interface CallContext {
  /** The thing asked for, as the person knows it: "droplet 12345", "droplet api-1". */
  what: string;
  /** The API base URL, named when it cannot be reached. */
  endpoint: string;
  /** Set for calls that change something: what may have happened anyway when the answer was lost. */
  mayHaveHappened?: string;
}

const connectionProblems: Record<string, string> = {
  ECONNABORTED: 'it did not answer in time',
  ETIMEDOUT: 'the connection timed out',
  ECONNRESET: 'the connection was reset',
  EPIPE: 'the connection was closed',
  ECONNREFUSED: 'the connection was refused',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved',
};

const statusLine = (status: number) => `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;

/** "42 s", "5 min": how long, for a person. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return s < 120 ? `${s} s` : `${Math.ceil(s / 60)} min`;
}

/** DigitalOcean's error body `{id, message, request_id}`, as far as it is there. */
function errorBody(data: unknown): { id?: string; message?: string; requestId?: string } {
  if (typeof data !== 'object' || data === null) return {};
  const body = data as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  return { id: text(body.id), message: text(body.message), requestId: text(body.request_id) };
}

const withPeriod = (s: string) => (/[.!?]$/.test(s) ? s : `${s}.`);
/** ": DigitalOcean's message." or just "." */
const saying = (message: string | undefined) => (message === undefined ? '.' : `: ${withPeriod(message)}`);

/**
 * Turns what a DigitalOcean call threw into one line for the terminal and a hint. Errors that are
 * not DigitalOcean's (a bug, a PlumbError from a hook) pass through unchanged.
 */
export function toDigitalOceanError(thrown: unknown, ctx: CallContext, nowMs: number = Date.now()): unknown {
  if (thrown instanceof DigitalOceanError) return thrown;
  const exhausted = thrown instanceof RetriesExhausted ? thrown : undefined;
  const err = exhausted?.cause ?? thrown;
  if (!isAxiosError(err)) return thrown;
  const tries =
    exhausted === undefined || exhausted.attempts === 1
      ? ''
      : ` after ${exhausted.attempts} attempts over ${duration(exhausted.waitedMs)}`;
  const anyway = ctx.mayHaveHappened === undefined ? '' : ` ${ctx.mayHaveHappened}`;

  const response = err.response;
  if (response === undefined) {
    const problem = (err.code !== undefined ? connectionProblems[err.code] : undefined) ?? err.message;
    return new DigitalOceanError('DIGITALOCEAN_UNREACHABLE', `Could not reach DigitalOcean at ${ctx.endpoint}: ${problem}${tries}.`, {
      hint: `Check the network (and PLUMB_DIGITALOCEAN_API_URL if you set it), then try again.${anyway}`,
    });
  }

  const { status } = response;
  const body = errorBody(response.data);
  const details: DigitalOceanErrorDetails = {
    status,
    id: body.id,
    requestId: body.requestId ?? header(response.headers, 'x-request-id'),
  };
  const fail = (code: DigitalOceanErrorCode, message: string, hint?: string) =>
    new DigitalOceanError(code, message, { ...details, hint });

  if (status === 401) return fail('DIGITALOCEAN_UNAUTHORIZED', 'DigitalOcean refused the API token (401 Unauthorized).', TOKEN_HINT);
  if (status === 403) {
    return fail(
      'DIGITALOCEAN_FORBIDDEN',
      `DigitalOcean does not let this token do that (403 Forbidden)${saying(body.message)}`,
      `The token may be read-only: create one with read and write scope at ${TOKENS_URL}`,
    );
  }
  if (status === 404) return fail('DIGITALOCEAN_NOT_FOUND', `DigitalOcean has no ${ctx.what} (404 Not Found).`);
  if (status === 422) {
    return fail('DIGITALOCEAN_REJECTED', `DigitalOcean rejected the request: ${withPeriod(body.message ?? statusLine(status))}`);
  }
  if (status === 429) {
    const waitMs = rateLimitWaitMs(response.headers, nowMs);
    const reset =
      waitMs === undefined
        ? 'try again in a minute'
        : `it resets in ${duration(waitMs)} (${new Date(nowMs + waitMs).toISOString().slice(11, 19)} UTC)`;
    return fail(
      'DIGITALOCEAN_RATE_LIMITED',
      `DigitalOcean's API rate limit for this token is used up (429 Too Many Requests)${tries}; ${reset}.`,
      `DigitalOcean allows 250 requests a minute and 5,000 an hour per token; run the command again after the reset.`,
    );
  }
  if (status >= 500) {
    return fail(
      'DIGITALOCEAN_UNAVAILABLE',
      `DigitalOcean is failing (${statusLine(status)})${tries}; try again in a few minutes.`,
      `${STATUS_PAGE_URL} lists DigitalOcean's incidents.${anyway}`,
    );
  }
  return fail(
    'DIGITALOCEAN_ERROR',
    `DigitalOcean answered ${statusLine(status)} for ${ctx.what}${saying(body.message)}`,
  );
}
