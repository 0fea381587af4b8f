import { EXIT, exitCodeOf, PlumbError, type ExitCode } from '@plumb/shared/core';
import type { RemoteError } from '../agent/client.js';
import type { Context } from '../context.js';
import type { Chooser } from '../local/droplets-state.js';
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
    result = await work((await import('../context.js')).defaultContext(reporter.progress, process.env, await terminalChooser(reporter.hold)));
  } finally {
    reporter.stop();
  }
  process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : `${await text(result)}\n`);
  process.exitCode = exitCode(result);
}

/** A context without progress, for the commands that stream their own output (logs, watch). */
export const quietContext = async (): Promise<Context> => (await import('../context.js')).defaultContext(() => {}, process.env, await terminalChooser((ask) => ask()));

/** Asking which droplet, when none was named and plumb knows several: only where someone can answer. */
async function terminalChooser(hold: <T>(ask: () => Promise<T>) => Promise<T>): Promise<Chooser | undefined> {
  if (!process.stdin.isTTY) return undefined;
  const { chooseOnTerminal } = await import('./choose.js');
  return (names) => hold(() => chooseOnTerminal(names));
}

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
/**
 * A command still waiting when node has nothing left to wait for (a promise nothing can settle)
 * is a bug: said as one, with exit code 1, not left to node's silent exit code 13. Call what this
 * returns when the command has finished.
 */
export function reportIfUnfinished(json: boolean): () => void {
  let finished = false;
  process.once('beforeExit', () => {
    if (!finished) process.exitCode = reportError(new Error('the command stopped before it finished, waiting for something that can no longer happen (a bug in plumb: please report it with the command you ran)'), json);
  });
  return () => {
    finished = true;
  };
}

export function reportError(err: unknown, json: boolean): ExitCode {
  if (!(err instanceof PlumbError)) {
    // A bug, not a refusal: the stack goes to stderr for the report, and a script still reads one JSON error.
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: 'INTERNAL', message: `unexpected error: ${err instanceof Error ? err.message : String(err)}` } }, null, 2)}\n`);
    process.stderr.write(`plumb: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT.failure;
  }
  // By shape, not instanceof (RemoteError and its subclasses): the agent client (ws, tls) is
  // loaded only by commands that connect.
  const remote = 'logTitle' in err && 'log' in err ? (err as RemoteError) : undefined;
  if (json) {
    const step = remote ? { step: remote.step, log: remote.log } : {};
    process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint, ...step } }, null, 2)}\n`);
  }
  // Messages and log lines may come from the droplet: shown with their control characters escaped.
  const hint = err.hint ? `  ${terminalSafe(err.hint)}\n` : '';
  if (remote?.step) {
    process.stderr.write(`plumb: failed at "${terminalSafe(remote.step)}": ${terminalSafe(err.message)}\n${hint}`);
    if (remote.log.length > 0) process.stderr.write(`  ${remote.logTitle}:\n${remote.log.map((l) => `    ${terminalSafe(l)}\n`).join('')}`);
  } else {
    process.stderr.write(`plumb: ${terminalSafe(err.message)}\n${hint}`);
  }
  return exitCodeOf(err.code);
}
