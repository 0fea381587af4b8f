import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { LOG_BATCH_MAX_BYTES, LOG_ENTRY_MAX_BYTES, type LogEntry } from '@plumb/shared';
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
  let batchBytes = 0;
  let timer: NodeJS.Timeout | undefined;
  let sending = Promise.resolve();
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (batch.length === 0) return;
    const out = batch;
    batch = [];
    batchBytes = 0;
    count += out.length;
    child.stdout?.pause();
    sending = sending.then(() => sink.send(out)).finally(() => child.stdout?.resume());
  };
  const lines = createInterface({ input: child.stdout! });
  const closed = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    const parsed = parseJournalLine(line);
    if (!parsed) return;
    const entry = bounded(parsed);
    // JSON escaping can grow a message up to 6x (control characters as \u00XX).
    const bytes = 6 * Buffer.byteLength(entry.message) + 100;
    if (batchBytes + bytes > LOG_BATCH_MAX_BYTES) flush();
    batch.push(entry);
    batchBytes += bytes;
    if (batch.length >= BATCH_ENTRIES) flush();
    else timer ??= setTimeout(flush, BATCH_MS);
  });
  await child;
  await closed;
  flush();
  await sending;
  return { entries: count };
}

/** An entry whose message is cut to LOG_ENTRY_MAX_BYTES, saying how much was left out. */
export function bounded(entry: LogEntry): LogEntry {
  const bytes = Buffer.from(entry.message, 'utf8');
  if (bytes.length <= LOG_ENTRY_MAX_BYTES) return entry;
  // Decoding a cut buffer drops a split last character rather than sending half of it.
  const kept = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, LOG_ENTRY_MAX_BYTES)).replace(/\uFFFD$/, '');
  return { ...entry, message: `${kept} [plumb: ${bytes.length - Buffer.byteLength(kept)} more bytes cut]` };
}
