import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { LOG_BATCH_MAX_BYTES, LOG_ENTRY_MAX_BYTES, type LogEntry } from '@plumb/shared';
import { followMatches, journalArgs, ofApi, parseJournalLine, readArgs, type JournalRecord, type JournalStart } from '../system/journal.js';
import { apiUids } from '../system/api-account.js';
import { log } from '../log.js';
import { JournalAhead } from './logs-ahead.js';
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
  // Before the moment of asking: the journal's last entry then is where a follow starts.
  const ahead = req.follow ? JournalAhead.open(req.name) : undefined;
  try {
    const asked = Date.now();
    // `-n 0` shows nothing of the past, so there is nothing to ask before following.
    const past = req.follow && req.lines === 0 ? { entries: 0, cursor: undefined } : await journal(journalArgs(req.name, req), sink, () => true);
    if (!req.follow || sink.signal.aborted) return { entries: past.entries };
    ahead?.after(past.cursor);
    // After the last line shown, or, if none was, from the moment of asking: nothing in between is lost or shown twice.
    const from: JournalStart = past.cursor ? { afterCursor: past.cursor } : ahead ? { afterCursor: ahead.startCursor } : { sinceMs: asked };
    return { entries: past.entries + (await follow(req.name, from, sink, ahead)) };
  } finally {
    ahead?.close();
  }
}

/** journalctl -f from `from` on, keeping the API's lines (ofApi); with `ahead`, read from the journal file as well, sooner. */
async function follow(name: string, from: JournalStart, sink: LogSink, ahead: JournalAhead | undefined): Promise<number> {
  const uid = (await apiUids([name])).get(name);
  const keep = (record: JournalRecord) => ofApi(name, record);
  const { entries } = await journal([...readArgs(name, from, uid), '-f'], sink, keep, ahead && { ahead, matches: followMatches(name, uid) });
  if (ahead) log.info('logs -f ended', { api: name, entries, fromFile: ahead.shown });
  return entries;
}

/**
 * Sends what one journalctl prints (the records `keep` takes) as it comes; how many were sent and
 * the last cursor it printed. With `fast`, the journal file's new entries too, ahead of journalctl
 * (logs-ahead.ts), and journalctl's copies of them dropped.
 */
async function journal(args: string[], sink: LogSink, keep: (record: JournalRecord) => boolean, fast?: { ahead: JournalAhead; matches: string[] }): Promise<{ entries: number; cursor: string | undefined }> {
  const child = execa('journalctl', args, { reject: false, cancelSignal: sink.signal, buffer: false, stdin: 'ignore' });
  let count = 0;
  let cursor: string | undefined;
  let batch: LogEntry[] = [];
  let batchBytes = 0;
  let pending: NodeJS.Immediate | undefined;
  let inFlight = 0;
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
    inFlight++;
    sending = sending
      .then(() => sink.send(out))
      .finally(() => {
        inFlight--;
        child.stdout?.resume();
      });
  };
  const show = (record: JournalRecord) => {
    const entry = bounded(record.entry);
    // JSON escaping can grow a message up to 6x (control characters as \u00XX).
    const bytes = 6 * Buffer.byteLength(entry.message) + 100;
    if (batchBytes + bytes > LOG_BATCH_MAX_BYTES) flush();
    batch.push(entry);
    batchBytes += bytes;
    // What came at once goes out together, right after this read: no wait for more.
    if (batch.length >= BATCH_ENTRIES) flush();
    else pending ??= setImmediate(flush);
  };
  fast?.ahead.follow(fast.matches, keep, { busy: () => inFlight > 0, show });
  const lines = createInterface({ input: child.stdout! });
  const closed = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    const record = parseJournalLine(line);
    if (!record) return;
    cursor = record.cursor ?? cursor;
    const kept = keep(record);
    if (fast?.ahead.delivered(record, kept)) return;
    if (kept) show(record);
  });
  await child;
  await closed;
  fast?.ahead.close();
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
