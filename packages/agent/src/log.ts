/** One JSON object per line on stdout, which journald keeps (`journalctl -u plumb-agent -o cat`). */
export type Fields = Record<string, string | number | boolean | undefined>;

function write(level: 'info' | 'warn' | 'error', msg: string, fields: Fields = {}): void {
  process.stdout.write(`${JSON.stringify({ level, msg, ...fields })}\n`);
}

export const log = {
  info: (msg: string, fields?: Fields) => write('info', msg, fields),
  warn: (msg: string, fields?: Fields) => write('warn', msg, fields),
  error: (msg: string, fields?: Fields) => write('error', msg, fields),
};

/**
 * With PLUMB_TIMING=1 in the agent's environment, one line per step of a deploy's way from R's
 * start to its answer (`msg: "timing"`), stamped with CLOCK_MONOTONIC in ms: the clock of
 * systemd's *TimestampMonotonic, and, in the lab, of the host (bench/switch.ts reads them).
 * Without it, nothing.
 */
const timing = process.env['PLUMB_TIMING'] === '1';
export function mark(step: string, fields: Fields = {}): void {
  if (timing) write('info', 'timing', { step, mono_ms: Number(process.hrtime.bigint() / 1000n) / 1000, ...fields });
}
