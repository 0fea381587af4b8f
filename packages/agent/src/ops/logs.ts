import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { LOG_BATCH_MAX_BYTES, LOG_ENTRY_MAX_BYTES, type LogEntry } from '@plumb/shared';
import { journalArgs, ofApi, parseJournalLine, readArgs, type JournalRecord, type JournalStart } from '../system/journal.js';
import { apiUids } from '../system/api-account.js';
import { requireApi } from './routing.js';
import type { OpContext } from './context.js';

/** Entries per message at most. */
const BATCH_ENTRIES = 200;

export interface LogSink {
  /** Sends a batch; resolves when the socket has room again (backpressure). */
  send(entries: LogEntry[]): Promise<void>;
  signal: AbortSignal;
}

/**
 * The API's journal via `journalctl -o json` (for all its workers), sent in batches; with follow,
 * then what comes after it, until the controller cancels. journalctl is paused while the socket is full.
 */
export async function logs(req: { name: string; lines: number; since: string | null; follow: boolean }, sink: LogSink, ctx: OpContext): Promise<{ entries: number }> {
  requireApi(ctx.state.get(), req.name);
  const asked = Date.now();
  // `-n 0` shows nothing of the past, so there is nothing to ask before following.
  const past = req.follow && req.lines === 0 ? { entries: 0, cursor: undefined } : await journal(journalArgs(req.name, req), sink, () => true);
  if (!req.follow || sink.signal.aborted) return { entries: past.entries };
  // After the last line shown, or, if none was, from the moment of asking: nothing in between is lost or shown twice.
  return { entries: past.entries + (await follow(req.name, past.cursor ? { afterCursor: past.cursor } : { sinceMs: asked }, sink)) };
}

/** journalctl -f from `from` on, keeping the API's lines (ofApi). */
async function follow(name: string, from: JournalStart, sink: LogSink): Promise<number> {
  const uid = (await apiUids([name])).get(name);
  return (await journal([...readArgs(name, from, uid), '-f'], sink, (record) => ofApi(name, record))).entries;
}

/** Sends what one journalctl prints (the records `keep` takes) as it comes; how many were sent and the last cursor it printed. */
async function journal(args: string[], sink: LogSink, keep: (record: JournalRecord) => boolean): Promise<{ entries: number; cursor: string | undefined }> {
  const child = execa('journalctl', args, { reject: false, cancelSignal: sink.signal, buffer: false, stdin: 'ignore' });
  let count = 0;
  let cursor: string | undefined;
  let batch: LogEntry[] = [];
  let batchBytes = 0;
  let pending: NodeJS.Immediate | undefined;
  let sending = Promise.resolve();
  const flush = () => {
    clearImmediate(pending);
    pending = undefined;
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
    const record = parseJournalLine(line);
    if (!record) return;
    cursor = record.cursor ?? cursor;
    if (!keep(record)) return;
    const entry = bounded(record.entry);
    // JSON escaping can grow a message up to 6x (control characters as \u00XX).
    const bytes = 6 * Buffer.byteLength(entry.message) + 100;
    if (batchBytes + bytes > LOG_BATCH_MAX_BYTES) flush();
    batch.push(entry);
    batchBytes += bytes;
    // What journalctl printed at once goes out together, right after this read: no wait for more.
    if (batch.length >= BATCH_ENTRIES) flush();
    else pending ??= setImmediate(flush);
  });
  await child;
  await closed;
  flush();
  await sending;
  return { entries: count, cursor };
}

/** An entry whose message is cut to LOG_ENTRY_MAX_BYTES, saying how much was left out. */
export function bounded(entry: LogEntry): LogEntry {
  const bytes = Buffer.from(entry.message, 'utf8');
  if (bytes.length <= LOG_ENTRY_MAX_BYTES) return entry;
  // Decoding a cut buffer drops a split last character rather than sending half of it.
  const kept = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, LOG_ENTRY_MAX_BYTES)).replace(/\uFFFD$/, '');
  return { ...entry, message: `${kept} [plumb: ${bytes.length - Buffer.byteLength(kept)} more bytes cut]` };
}
