import { ApiName, checkInput, JournalSince, LogLines, type LogEntry, type LogsResult } from '@plumb/shared';
import type { Context } from '../context.js';
import { withAgent } from '../agent/connect.js';

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
  const name = checkInput(ApiName, opts.name, 'API name');
  const lines = checkInput(LogLines, opts.lines ?? 50, '-n');
  const since = opts.since === undefined ? null : checkInput(JournalSince, opts.since, '--since');
  return withAgent(ctx, opts.droplet, async ({ connection }) => {
    const pending = connection.start<LogsResult>(
      { type: 'logs', name, lines, since, follow: opts.follow ?? false },
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
