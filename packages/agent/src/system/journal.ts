import { execa } from 'execa';
import type { LogEntry } from '@plumb/shared';
import { unitGlob } from './layout.js';

/** The API's journal, as journalctl gives it (`-o json`), for all its workers. */
export function journalArgs(name: string, opts: { lines: number; since: string | null; follow: boolean }): string[] {
  // --all: without it journalctl's JSON gives `null` for any field over 4096 bytes, so a long line arrived empty.
  return ['-o', 'json', '--all', '--no-pager', '-u', unitGlob(name), '-n', String(opts.lines), ...(opts.since ? ['--since', opts.since] : []), ...(opts.follow ? ['-f'] : [])];
}

export function parseJournalLine(line: string): LogEntry | undefined {
  try {
    const j = JSON.parse(line) as Record<string, unknown>;
    const message = Array.isArray(j['MESSAGE']) ? Buffer.from(j['MESSAGE'] as number[]).toString('utf8') : String(j['MESSAGE'] ?? '');
    return {
      time: Number(j['__REALTIME_TIMESTAMP'] ?? 0),
      // systemd's own lines about a worker (started, failed) carry it in UNIT; the worker's in _SYSTEMD_UNIT.
      unit: String(j['UNIT'] ?? j['_SYSTEMD_UNIT'] ?? ''),
      priority: Number(j['PRIORITY'] ?? 6),
      message,
    };
  } catch {
    return undefined;
  }
}

/** The last lines one worker wrote since it started: shown with a failed deploy (earlier workers on the same port are not). */
export async function lastLines(unit: string, lines: number, sinceMs?: number): Promise<string[]> {
  const since = sinceMs === undefined ? [] : ['--since', `@${Math.floor(sinceMs / 1000)}`];
  const result = await execa('journalctl', ['-u', unit, ...since, '-n', String(lines), '-o', 'cat', '--no-pager'], { reject: false, timeout: 30_000 });
  return result.stdout.split('\n').filter((l) => l.length > 0);
}

/**
 * Which of these processes wrote the line `message` this boot: one journalctl for all of them
 * (journalctl ORs the values of one field and ANDs the fields).
 */
export async function processesThatSaid(pids: readonly number[], message: string): Promise<Set<number>> {
  if (pids.length === 0) return new Set();
  const result = await execa('journalctl', ['-b', '-o', 'json', '--output-fields=_PID', '--no-pager', ...pids.map((pid) => `_PID=${pid}`), `MESSAGE=${message}`], { reject: false, timeout: 30_000 });
  const said = result.stdout.split('\n').map((line) => {
    try {
      return Number((JSON.parse(line) as Record<string, unknown>)['_PID']);
    } catch {
      return NaN;
    }
  });
  return new Set(said.filter((pid) => pids.includes(pid)));
}
