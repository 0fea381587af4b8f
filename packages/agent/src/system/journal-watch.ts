import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOG_FOLLOW_POLL_MS } from '@plumb/shared';

/** Where journald keeps the journal: persistent, else volatile (journald.conf's Storage=). */
const JOURNAL_DIRS = ['/var/log/journal', '/run/log/journal'];
/** The file header (systemd's docs/JOURNAL_FILE_FORMAT.md): its signature, and `n_entries`, which journald raises with each entry it appends. */
const SIGNATURE = Buffer.from('LPKSHHRH');
const N_ENTRIES_OFFSET = 152;

/** Where journald keeps the journal (tests: a directory of their own). */
export interface JournalPlace {
  dirs: readonly string[];
  machineId: string;
}

interface Opened {
  path: string;
  file: FileHandle;
  ino: number;
  count: bigint;
  mtimeMs: number;
}

/**
 * Tells when journald has appended to the active system journal, where the workers' lines (their
 * users are system users) and systemd's go, by reading the entry count in the file's header.
 * journald writes each entry into the file at once but tells inotify readers (journalctl -f) only
 * 250-500 ms later (docs/benchmarks.md, "where the time goes"). Read-only: one open file while
 * following, 8 bytes read per look.
 */
export class JournalWatch {
  private constructor(
    private active: Opened,
    private readonly where: JournalPlace,
  ) {}

  /** undefined: no system journal where journald keeps one; follow with journalctl -f instead. */
  static async open(where: Partial<JournalPlace> = {}): Promise<JournalWatch | undefined> {
    const place = { dirs: where.dirs ?? JOURNAL_DIRS, machineId: where.machineId ?? (await readFile('/etc/machine-id', 'utf8').catch(() => '')).trim() };
    const active = await openActive(place);
    return active && new JournalWatch(active, place);
  }

  /** Resolves true once the journal has changed since the last time it did (or since open); false once `signal` aborts. */
  async grown(signal: AbortSignal): Promise<boolean> {
    for (;;) {
      if (signal.aborted) return false;
      if (await this.changed()) return true;
      if (!(await sleep(LOG_FOLLOW_POLL_MS, true, { signal }).catch(() => false))) return false;
    }
  }

  async close(): Promise<void> {
    await this.active.file.close();
  }

  private async changed(): Promise<boolean> {
    const ino = await stat(this.active.path).then((s) => s.ino, () => undefined);
    if (ino !== this.active.ino) {
      // Rotated (renamed, a new file started) or flushed from /run to /var: the file to watch is another one.
      const next = await openActive(this.where);
      if (!next) return false;
      await this.active.file.close();
      this.active = next;
      return true;
    }
    // A header that cannot be read says nothing: read the journal rather than miss a line.
    const count = await entries(this.active.file).catch(() => undefined);
    if (count === this.active.count) return false;
    if (count === undefined) return true;
    this.active.count = count;
    return true;
  }
}

/** The system journal journald writes to now: of the persistent and the volatile one, the one it changed last. */
async function openActive({ dirs, machineId }: JournalPlace): Promise<Opened | undefined> {
  if (!/^[0-9a-f]{32}$/.test(machineId)) return undefined;
  const found = (await Promise.all(dirs.map((dir) => openJournal(`${dir}/${machineId}/system.journal`)))).filter((o): o is Opened => o !== undefined);
  found.sort((a, b) => b.mtimeMs - a.mtimeMs);
  await Promise.all(found.slice(1).map((o) => o.file.close()));
  return found[0];
}

async function openJournal(path: string): Promise<Opened | undefined> {
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return undefined;
  try {
    const signature = Buffer.alloc(SIGNATURE.length);
    await file.read(signature, 0, signature.length, 0);
    if (!signature.equals(SIGNATURE)) throw new Error('not a journal file');
    const st = await file.stat();
    return { path, file, ino: st.ino, count: await entries(file), mtimeMs: st.mtimeMs };
  } catch {
    await file.close();
    return undefined;
  }
}

async function entries(file: FileHandle): Promise<bigint> {
  const buf = Buffer.alloc(8);
  await file.read(buf, 0, 8, N_ENTRIES_OFFSET);
  return buf.readBigUInt64LE(0);
}
