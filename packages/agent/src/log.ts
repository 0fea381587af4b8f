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
