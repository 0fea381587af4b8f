import { ApiName, LOGS_MAX_LINES, ValidationError, type LogEntry, type LogsResult } from '@plumb/shared';
import type { Context } from '../context.js';
import { withAgent } from '../connect.js';

export interface LogsOptions {
  name: string;
  lines?: number;
  since?: string;
  follow?: boolean;
  droplet?: string;
}

/**
 * The API's journal from the droplet, entry by entry to `out`; with follow, until `signal` aborts
 * (Ctrl-C), which stops journalctl on the droplet too.
 */
export async function logs(opts: LogsOptions, out: (entry: LogEntry) => void, signal: AbortSignal, ctx: Context): Promise<LogsResult> {
  const name = ApiName.safeParse(opts.name);
  if (!name.success) throw new ValidationError(`invalid API name "${opts.name}": ${name.error.issues[0]?.message}`);
  const lines = opts.lines ?? 50;
  if (!Number.isInteger(lines) || lines < 0 || lines > LOGS_MAX_LINES) throw new ValidationError(`invalid -n "${opts.lines}": a whole number from 0 to ${LOGS_MAX_LINES}`);
  if (opts.since !== undefined && !/^[A-Za-z0-9 :.+-]{1,40}$/.test(opts.since)) throw new ValidationError(`invalid --since "${opts.since}": use journalctl's forms, e.g. "10 min ago" or "2026-11-25 10:00"`);
  return withAgent(ctx, opts.droplet, async ({ connection }) => {
    const pending = connection.start<LogsResult>(
      { type: 'logs', name: name.data, lines, since: opts.since ?? null, follow: opts.follow ?? false },
      { onLog: (entries) => entries.forEach(out) },
    );
    const cancel = () => connection.notify({ type: 'cancel', id: pending.id });
    if (signal.aborted) cancel();
    signal.addEventListener('abort', cancel, { once: true });
    try {
      return await pending.result;
    } finally {
      signal.removeEventListener('abort', cancel);
    }
  });
}
