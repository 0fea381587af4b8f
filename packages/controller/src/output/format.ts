import type { DrainReport } from '@plumb/shared';

/** A duration as plumb prints it: tenths of a second (`1.7 s`; progress lines use `1.7s`). */
export const seconds = (ms: number, unit = ' s') => `${(ms / 1000).toFixed(1)}${unit}`;

/** Columns padded to their widest cell, two spaces apart, without trailing blanks. */
export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, j) => Math.max(...rows.map((r) => r[j]?.length ?? 0))) ?? [];
  return rows.map((r) => r.map((c, j) => c.padEnd(widths[j] ?? 0)).join('  ').trimEnd()).join('\n');
}

/** `1 worker`, `2 workers`. */
export const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** What became of the previous workers after a switch (deploy, rollback, scale, restart). */
export function drainText(d: DrainReport): string[] {
  const n = d.ports.length;
  if (n === 0) return [];
  const which = `the previous ${n === 1 ? 'worker' : 'workers'} (${n === 1 ? 'port' : 'ports'} ${d.ports.join(', ')})`;
  if (!d.stopped) return [`  ${which} ${n === 1 ? 'finishes' : 'finish'} the requests in flight, then ${n === 1 ? 'stops' : 'stop'} (at most ${d.timeoutMs / 1000} s; \`plumb status\` shows them draining)`];
  if (d.cut > 0) return [`  ${which} stopped at the ${d.timeoutMs / 1000} s drain timeout with ${count(d.cut, 'connection')} still open (recorded in the events)`];
  return [`  ${which} stopped once their requests had finished`];
}
