import { EXIT, exitCodeOf, PlumbError, type ExitCode } from '@plumb/shared';
import { RemoteError } from '../agent/client.js';
import { defaultContext, type Context } from '../context.js';
import { progressReporter } from '../output/progress.js';
import { terminalSafe } from '../output/terminal.js';

/** The flags every command's output obeys. */
export interface OutputFlags {
  json?: true;
  quiet?: true;
}

/**
 * Runs a command's work with its progress on stderr (none with --quiet), prints what it returns
 * (text, or JSON with --json) and sets the exit code from it: the same code either way.
 */
export async function output<R>(flags: OutputFlags, work: (ctx: Context) => Promise<R>, text: (result: R) => string | Promise<string>, exitCode: (result: R) => ExitCode = () => EXIT.ok): Promise<void> {
  const reporter = progressReporter(process.stderr, { quiet: flags.quiet ?? false });
  let result: R;
  try {
    result = await work(defaultContext(reporter.progress));
  } finally {
    reporter.stop();
  }
  process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : `${await text(result)}\n`);
  process.exitCode = exitCode(result);
}

/** A context without progress, for the commands that stream their own output (logs, watch). */
export const quietContext = (): Context => defaultContext(() => {});

/** The exit code of a result that lists per-droplet errors: theirs when they agree, else a plain failure. */
export function worstExit(errors: Array<{ code: string } | undefined>): ExitCode {
  const codes = new Set(errors.filter((e) => e !== undefined).map((e) => exitCodeOf(e.code)));
  if (codes.size === 0) return EXIT.ok;
  return codes.size === 1 ? [...codes][0]! : EXIT.failure;
}

/**
 * The one place errors are printed: `plumb: MESSAGE` and the hint on stderr, and with --json the
 * same as `{error: {code, message, hint}}` on stdout. Returns the exit code (docs/commands.md).
 */
export function reportError(err: unknown, json: boolean): ExitCode {
  if (!(err instanceof PlumbError)) {
    process.stderr.write(`plumb: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT.failure;
  }
  if (json) {
    const step = err instanceof RemoteError ? { step: err.step, log: err.log } : {};
    process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint, ...step } }, null, 2)}\n`);
  }
  // Messages and log lines may come from the droplet: shown with their control characters escaped.
  const hint = err.hint ? `  ${terminalSafe(err.hint)}\n` : '';
  if (err instanceof RemoteError && err.step) {
    process.stderr.write(`plumb: failed at "${terminalSafe(err.step)}": ${terminalSafe(err.message)}\n${hint}`);
    if (err.log.length > 0) process.stderr.write(`  ${err.logTitle}:\n${err.log.map((l) => `    ${terminalSafe(l)}\n`).join('')}`);
  } else {
    process.stderr.write(`plumb: ${terminalSafe(err.message)}\n${hint}`);
  }
  return exitCodeOf(err.code);
}
