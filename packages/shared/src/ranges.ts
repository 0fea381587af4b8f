import { ValidationError } from './errors.js';
import { DRAIN_TIMEOUT_MAX_MS, LOGS_MAX_LINES } from './limits.js';

/**
 * The ranges of whole-number input (flags, requests), as plain numbers: the CLI checks its flags
 * with them without loading zod (`plumb --help` loads no schema), and names.ts makes the zod rules
 * the protocol uses from the same numbers.
 */
export interface WholeNumberRange {
  readonly min: number;
  readonly max: number;
}

export const range = (min: number, max: number): WholeNumberRange => ({ min, max });

/** R workers per API. */
export const WORKER_COUNT = range(1, 16);
/** Releases kept per API. */
export const KEEP_RELEASES = range(1, 50);
/** How long a new release may take to answer its health check, in seconds. */
export const HEALTH_TIMEOUT_SECONDS = range(1, 1800);
/** How long the previous workers may finish requests in flight, in seconds. */
export const DRAIN_TIMEOUT_SECONDS = range(0, DRAIN_TIMEOUT_MAX_MS / 1000);
/** Droplets a group deploy changes at a time (`--parallel`). */
export const GROUP_PARALLEL = range(1, 100);
/** Lines one `plumb logs -n` may ask for. */
export const LOG_LINES = range(0, LOGS_MAX_LINES);

export const wholeNumberMessage = (r: WholeNumberRange) => `a whole number from ${r.min} to ${r.max}`;

/**
 * A whole number typed by a user: decimal digits only (not `1e1`, `0x10`, ` 3` or `3.0`), within
 * the range; anything else is refused with the range in the message.
 */
export function parseWholeNumber(text: string, r: WholeNumberRange): number {
  const n = /^[0-9]{1,15}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= r.min && n <= r.max)) throw new ValidationError(wholeNumberMessage(r));
  return n;
}
