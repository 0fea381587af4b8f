import { PlumbError, type WireError } from '@plumb/shared';
import { log } from './log.js';
import { StepError } from './ops/context.js';

/** An error as the controller gets it: a stable code, a message for the person, and for failed steps the log. */
export function wireError(err: unknown): WireError {
  if (err instanceof StepError) return { code: err.code, message: err.message, step: err.step, log: err.log, ...(err.hint ? { hint: err.hint } : {}) };
  if (err instanceof PlumbError) return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  log.error('unexpected error', { error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  return { code: 'INTERNAL', message: `the agent failed unexpectedly: ${err instanceof Error ? err.message : String(err)} (see journalctl -u plumb-agent on the droplet)` };
}
