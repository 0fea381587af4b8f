import { execa } from 'execa';
import type { LogEntry } from '@plumb/shared';
import { unitGlob, workerUnits } from './layout.js';

/** The API's journal as it is now, as journalctl gives it (`-o json`), for all its workers. */
export function journalArgs(name: string, opts: { lines: number; since: string | null }): string[] {
  // --all: without it journalctl's JSON gives `null` for any field over 4096 bytes, so a long line arrived empty.
  return ['-o', 'json', '--all', '--no-pager', '-u', unitGlob(name), '-n', String(opts.lines), ...(opts.since ? ['--since', opts.since] : [])];
}

/** Where reading the journal again starts: after the last entry read, or at a moment. */
export type JournalStart = { afterCursor: string } | { sinceMs: number };

/**
 * The API's journal from a point on (add `-f` to follow). Not `-u 'plumber-NAME@*'`: journalctl
 * turns a unit glob into the names already in the journal when it starts (journalctl-filter.c,
 * journal_add_unit_matches: get_possible_field_values), so a follow never showed a worker on a port
 * the API had not used before, as the next deploy's often is. A worker's output carries the unit's
 * SyslogIdentifier whatever its port, and what else its processes write their user's uid;
 * systemd's lines about it (started, failed, killed) come from PID 1. journalctl gives all three,
 * and ofApi keeps the API's.
 */
export function readArgs(name: string, from: JournalStart, uid?: number): string[] {
  const start = 'afterCursor' in from ? `--after-cursor=${from.afterCursor}` : `--since=@${(from.sinceMs / 1000).toFixed(3)}`;
  // --no-tail: with -f journalctl would otherwise stop its first pass after 10 entries (its follow default).
  return ['-o', 'json', '--all', '--no-pager', '--no-tail', start, ...followMatches(name, uid).flatMap((m, i) => (i === 0 ? [m] : ['+', m]))];
}

/** The `FIELD=value` matches a follow asks journalctl for, any of them (readArgs); ofApi then keeps the API's. */
export function followMatches(name: string, uid?: number): string[] {
  return [`SYSLOG_IDENTIFIER=plumber-${name}`, '_PID=1', ...(uid === undefined ? [] : [`_UID=${uid}`])];
}

/** One line of `journalctl -o json`: the entry, where a later journalctl would continue after it, and the unit journald vouches it is from or about. */
export interface JournalRecord {
  entry: LogEntry;
  cursor: string | undefined;
  /** `_SYSTEMD_UNIT` (set by journald from the writer's cgroup), or for PID 1's lines the unit they are about. */
  trustedUnit: string | undefined;
}

export function parseJournalLine(line: string): JournalRecord | undefined {
  try {
    return recordOf(JSON.parse(line) as Record<string, unknown>);
  } catch {
    return undefined;
  }
}

/** A record from an entry's fields as `journalctl -o json` names them (a field's bytes as a string, or as an array of numbers). */
export function recordOf(j: Record<string, unknown>): JournalRecord {
  const message = Array.isArray(j['MESSAGE']) ? Buffer.from(j['MESSAGE'] as number[]).toString('utf8') : String(j['MESSAGE'] ?? '');
  const field = (key: string) => (typeof j[key] === 'string' ? (j[key] as string) : undefined);
  return {
    entry: {
      time: Number(j['__REALTIME_TIMESTAMP'] ?? 0),
      // systemd's own lines about a worker (started, failed) carry it in UNIT; the worker's in _SYSTEMD_UNIT.
      unit: String(j['UNIT'] ?? j['_SYSTEMD_UNIT'] ?? ''),
      priority: Number(j['PRIORITY'] ?? 6),
      message,
    },
    cursor: field('__CURSOR'),
    // Any process may write SYSLOG_IDENTIFIER=plumber-NAME or UNIT=...; only journald's own fields (`_`) say who wrote it.
    trustedUnit: field('_PID') === '1' ? field('UNIT') : field('_SYSTEMD_UNIT'),
  };
}

/** Which journal (`s=`, its seqnum id) and which entry in it (`i=`, hex) a cursor names. */
export function cursorPlace(cursor: string | undefined): { seqnumId: string; seqnum: number } | undefined {
  const s = /(?:^|;)s=([0-9a-f]{32})(?:;|$)/.exec(cursor ?? '')?.[1];
  const i = /(?:^|;)i=([0-9a-f]{1,13})(?:;|$)/.exec(cursor ?? '')?.[1];
  return s && i ? { seqnumId: s, seqnum: parseInt(i, 16) } : undefined;
}

/** Whether a followed record is one of the API's workers' lines or systemd's about one of them. */
export function ofApi(name: string, record: JournalRecord): boolean {
  return workerUnits.pattern.exec(record.trustedUnit ?? '')?.[1] === name;
}

/** The last lines one worker wrote since it started: shown with a failed deploy (earlier workers on the same port are not). */
export async function lastLines(unit: string, lines: number, sinceMs?: number): Promise<string[]> {
  const since = sinceMs === undefined ? [] : ['--since', `@${Math.floor(sinceMs / 1000)}`];
  const result = await execa('journalctl', ['-u', unit, ...since, '-n', String(lines), '-o', 'cat', '--no-pager'], { reject: false, timeout: 30_000 });
  return result.stdout.split('\n').filter((l) => l.length > 0);
}

/** Whose lines to look in: these processes, or any the unit ran since a moment (this boot either way). */
export type Speakers = { pids: readonly number[] } | { unit: string; sinceMs: number };

/**
 * The pids of the processes among `who` that wrote the line `message`: one journalctl for all
 * (it ORs the values of one field and ANDs the fields). null when journalctl failed.
 */
export async function pidsThatSaid(who: Speakers, message: string): Promise<Set<number> | null> {
  if ('pids' in who && who.pids.length === 0) return new Set();
  const match = 'pids' in who ? who.pids.map((pid) => `_PID=${pid}`) : [`--since=@${Math.floor(who.sinceMs / 1000)}`, `_SYSTEMD_UNIT=${who.unit}`];
  const result = await execa('journalctl', ['-b', '-o', 'json', '--output-fields=_PID', '--no-pager', ...match, `MESSAGE=${message}`], { reject: false, timeout: 30_000 });
  if (result.exitCode !== 0) return null;
  const said = result.stdout.split('\n').map((line) => {
    try {
      return Number((JSON.parse(line) as Record<string, unknown>)['_PID']);
    } catch {
      return NaN;
    }
  });
  return new Set(said.filter((pid) => ('pids' in who ? who.pids.includes(pid) : Number.isInteger(pid) && pid > 0)));
}
