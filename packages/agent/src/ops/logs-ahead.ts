import { existsSync, readFileSync } from 'node:fs';
import { JOURNAL_AHEAD_MAX_ENTRIES, JOURNAL_LOOK_MAX_ENTRIES, JOURNAL_POLL_MS, JOURNAL_SCAN_MAX_BYTES } from '@plumb/shared';
import { log } from '../log.js';
import { JournalFile, STATE_ARCHIVED, STATE_ONLINE, type JournalEntry, type JournalField } from '../system/journal-file.js';
import { cursorPlace, recordOf, type JournalRecord } from '../system/journal.js';

/*
 * `logs -f` ahead of journald's notice. journald writes an entry into its file at once but tells
 * followers (journalctl -f among them) only 250-500 ms later (docs/benchmarks.md, "where the time
 * goes"). While a follow runs, this reads the new entries from the file itself every
 * JOURNAL_POLL_MS and shows those the follow keeps at once; journalctl -f stays the source of
 * truth: what it prints that was shown already is dropped (same journal and seqnum, from its
 * cursor), what it prints that was not is shown. To keep the order, the file read shows an entry
 * only when everything before it that the follow keeps was shown: an entry it cannot read whole
 * (a compressed field, a field twice) stops it until journalctl has printed past that entry.
 * Anything it did not expect (another file, a disagreement with journalctl) stops it for the
 * rest of the follow; journalctl goes on alone.
 */

/** Where journald writes the system's entries (the APIs' users are system users): persistent first. */
const JOURNAL_DIRS = ['/var/log/journal', '/run/log/journal'];
/** Every this many looks, whether the file's path now names another file. */
const REPLACED_EVERY = 50;
/** The fields a record is made of (recordOf) and the follow's matches name (followMatches). */
const USED = new Set(['MESSAGE', 'UNIT', '_SYSTEMD_UNIT', 'PRIORITY', '_PID', 'SYSLOG_IDENTIFIER', '_UID']);

/** What a follow does with an entry read from the file. */
export type Verdict = { show: JournalRecord } | 'skip' | 'wait';

/**
 * An entry as journalctl -f with `matches` (any of them, FIELD=value) would print it and `keep`
 * take it: shown; one that it would not: skipped; one the file does not tell (a field read as
 * `unreadable` that may decide it or make it, a field of the record twice, more fields than read):
 * wait for journalctl. A match's value is short, so never compressed (journald compresses fields
 * over 512 bytes), nor are journald's own `_PID` and `_SYSTEMD_UNIT` that `keep` decides by.
 */
export function verdict(entry: JournalEntry, fields: JournalField[] | undefined, matches: readonly string[], keep: (record: JournalRecord) => boolean): Verdict {
  if (!fields) return 'wait';
  const known = new Map<string, Buffer>();
  let unreadable = false;
  let matched = false;
  for (const f of fields) {
    if (f === 'unreadable') {
      unreadable = true;
      continue;
    }
    if (USED.has(f.name) && known.has(f.name)) return 'wait';
    known.set(f.name, f.value);
    matched ||= matches.includes(`${f.name}=${f.value.toString('latin1')}`);
  }
  const j: Record<string, unknown> = { __REALTIME_TIMESTAMP: String(entry.realtime), __CURSOR: entry.cursor };
  // journalctl prints a field that is not printable UTF-8 as an array of bytes: the others, read alike, are plain ASCII.
  let plain = true;
  for (const [name, value] of known) {
    if (!USED.has(name)) continue;
    j[name] = name === 'MESSAGE' ? value.toString('utf8') : value.toString('latin1');
    plain &&= name === 'MESSAGE' || value.every((c) => c >= 0x20 && c < 0x7f);
  }
  const record = recordOf(j);
  if (unreadable && !(known.has('_PID') && record.trustedUnit !== undefined)) return 'wait';
  if (!keep(record)) return 'skip';
  if (!plain || (unreadable && !known.has('MESSAGE'))) return 'wait';
  if (matched) return { show: record };
  return unreadable ? 'wait' : 'skip';
}

/** Where the follow's shown entries go: `busy` while a batch is on its way (the file read waits then). */
export interface AheadOutput {
  busy(): boolean;
  show(record: JournalRecord): void;
}

export class JournalAhead {
  private confirmed: number;
  /** The next object to look at. */
  private at: number;
  /** The last entry passed (shown, skipped, or printed by journalctl): seqnums only grow. */
  private last = 0;
  /** Shown from the file, not yet printed by journalctl; ascending. */
  private readonly sent: number[] = [];
  private waitingFor: number | undefined;
  private stopped: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private looks = 0;
  private closed = false;
  /** Entries shown from the file (the rest of a follow's came from journalctl). */
  shown = 0;

  private constructor(
    private readonly file: JournalFile,
    private readonly seqnumId: string,
    start: JournalEntry,
    /** journalctl -f starts after this entry (the journal's last at the moment of asking). */
    readonly startCursor: string,
  ) {
    this.confirmed = start.seqnum;
    this.at = start.offset;
  }

  /** The file journald writes now, from its last entry on; undefined (and why, logged) when there is none this reads. */
  static open(api: string): JournalAhead | undefined {
    let file: JournalFile | undefined;
    try {
      const machineId = readFileSync('/etc/machine-id', 'utf8').trim();
      const path = JOURNAL_DIRS.map((dir) => `${dir}/${machineId}/system.journal`).find((p) => existsSync(p));
      if (!/^[0-9a-f]{32}$/.test(machineId) || !path) throw new Error('no system journal file');
      file = JournalFile.open(path);
      const header = file.readHeader();
      if (header.state !== STATE_ONLINE || header.tailEntryOffset === 0) throw new Error(`${path} is not being written`);
      const start = file.entries(header.tailEntryOffset, 1).entries[0];
      if (!start) throw new Error(`no entry at ${path}'s tail`);
      return new JournalAhead(file, header.seqnumId, start, start.cursor);
    } catch (err) {
      file?.close();
      log.info('logs -f: following with journalctl alone', { api, reason: (err as Error).message });
      return undefined;
    }
  }

  /** The past lines' pass printed up to `cursor`: the follow's journalctl starts after it. */
  after(cursor: string | undefined): void {
    const place = cursorPlace(cursor);
    if (!place) return;
    if (place.seqnumId !== this.seqnumId) this.stop('the past lines came from another journal file');
    else this.confirmed = Math.max(this.confirmed, place.seqnum);
  }

  /** Looks at the file every JOURNAL_POLL_MS, showing what the follow keeps through `out`, until stopped or closed. */
  follow(matches: readonly string[], keep: (record: JournalRecord) => boolean, out: AheadOutput): void {
    if (this.stopped) return;
    this.timer = setInterval(() => {
      try {
        this.look(matches, keep, out);
      } catch (err) {
        this.stop((err as Error).message);
      }
    }, JOURNAL_POLL_MS);
  }

  /**
   * journalctl printed `record` (`kept`: the follow keeps it). True when it was shown from the
   * file already, so it is not shown again.
   */
  delivered(record: JournalRecord, kept: boolean): boolean {
    const place = cursorPlace(record.cursor);
    if (!place || place.seqnumId !== this.seqnumId) {
      // The order across journal files is journalctl's to keep.
      if (kept) this.stop('journalctl printed an entry of another journal file');
      return false;
    }
    this.confirmed = Math.max(this.confirmed, place.seqnum);
    let passedOver = false;
    while (this.sent.length > 0 && this.sent[0]! < place.seqnum) {
      this.sent.shift();
      passedOver = true;
    }
    if (passedOver) this.stop('journalctl did not print an entry shown from the file');
    if (this.sent[0] === place.seqnum) {
      this.sent.shift();
      if (!kept) this.stop('journalctl printed an entry shown from the file that the follow does not keep');
      return true;
    }
    if (kept && this.sent.length > 0) this.stop('journalctl printed an entry the file read passed over');
    return false;
  }

  /** Stops looking and closes the file; again: nothing. */
  close(): void {
    clearInterval(this.timer);
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }

  private stop(reason: string): void {
    if (this.stopped) return;
    this.stopped = reason;
    // The file is read no more: closed now, not when the follow ends (a rotated file would stay on disk meanwhile).
    this.close();
    // What was shown is still dropped when journalctl prints it (delivered goes on).
    log.warn('logs -f: stopped reading the journal file ahead of journalctl', { reason, file: this.file.path });
  }

  private look(matches: readonly string[], keep: (record: JournalRecord) => boolean, out: AheadOutput): void {
    if (this.stopped || out.busy() || this.sent.length >= JOURNAL_AHEAD_MAX_ENTRIES) return;
    if (this.waitingFor !== undefined) {
      if (this.confirmed < this.waitingFor) return;
      this.waitingFor = undefined;
    }
    if (++this.looks % REPLACED_EVERY === 0 && this.file.replaced()) return this.stop('journald writes another file now');
    const header = this.file.readHeader();
    if (header.seqnumId !== this.seqnumId || header.state === STATE_ARCHIVED) return this.stop('journald rotated the file');
    if (header.tailEntryOffset < this.at) return;
    const { entries, next } = this.file.entries(this.at, JOURNAL_SCAN_MAX_BYTES);
    for (const [read, entry] of entries.entries()) {
      if (read >= JOURNAL_LOOK_MAX_ENTRIES) return;
      if (entry.seqnum <= this.last) return this.stop(`seqnum ${entry.seqnum} after ${this.last}`);
      if (entry.seqnum > this.confirmed) {
        const v = verdict(entry, this.file.fieldsOf(entry), matches, keep);
        if (v === 'wait') {
          this.waitingFor = entry.seqnum;
          this.at = entry.offset;
          return;
        }
        if (v !== 'skip') {
          this.sent.push(entry.seqnum);
          this.shown++;
          out.show(v.show);
        }
      }
      this.last = entry.seqnum;
      this.at = entry.next;
      if (this.sent.length >= JOURNAL_AHEAD_MAX_ENTRIES) return;
    }
    this.at = next;
  }
}
