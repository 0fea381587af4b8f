import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { LogEntry } from '@plumb/shared';
import { journalArgs, parseJournalLine } from '../system/journal.js';
import { requireApi } from './routing.js';
import type { OpContext } from './context.js';

/** Entries per message, and how long a partial batch may wait before it goes out. */
const BATCH_ENTRIES = 200;
const BATCH_MS = 50;

export interface LogSink {
  /** Sends a batch; resolves when the socket has room again (backpressure). */
  send(entries: LogEntry[]): Promise<void>;
  signal: AbortSignal;
}

/**
 * The API's journal via `journalctl -o json` (for all its workers), sent in batches; with follow,
 * until the controller cancels. journalctl is paused while the socket is full.
 */
export async function logs(req: { name: string; lines: number; since: string | null; follow: boolean }, sink: LogSink, ctx: OpContext): Promise<{ entries: number }> {
  requireApi(ctx.state.get(), req.name);
  const child = execa('journalctl', journalArgs(req.name, req), { reject: false, cancelSignal: sink.signal, buffer: false, stdin: 'ignore' });
  let count = 0;
  let batch: LogEntry[] = [];
  let timer: NodeJS.Timeout | undefined;
  let sending = Promise.resolve();
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (batch.length === 0) return;
    const out = batch;
    batch = [];
    count += out.length;
    child.stdout?.pause();
    sending = sending.then(() => sink.send(out)).finally(() => child.stdout?.resume());
  };
  const lines = createInterface({ input: child.stdout! });
  const closed = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    const entry = parseJournalLine(line);
    if (!entry) return;
    batch.push(entry);
    if (batch.length >= BATCH_ENTRIES) flush();
    else timer ??= setTimeout(flush, BATCH_MS);
  });
  await child;
  await closed;
  flush();
  await sending;
  return { entries: count };
}
