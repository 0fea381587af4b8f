import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { LabError } from './errors.js';

/** Runs a host command with an argument array; a failure names the command and its stderr. */
export async function run(file: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const result = await execa(file, args, {
    reject: false,
    timeout: opts.timeoutMs ?? 120_000,
    ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
  });
  if (result.exitCode !== 0 || result.timedOut) {
    const why = result.timedOut ? 'timed out' : `exited ${result.exitCode}`;
    const detail = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ');
    throw new LabError(`${file} ${args.join(' ')} ${why}: ${detail}`);
  }
  return result.stdout;
}

/** Same as run, for teardown steps whose target may already be gone: never throws. */
export async function tryRun(file: string, args: readonly string[]): Promise<boolean> {
  const result = await execa(file, args, { reject: false, stdin: 'ignore', timeout: 60_000 });
  return result.exitCode === 0;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * True while a process with this pid runs. A zombie counts as gone: on these machines PID 1 does
 * not reap orphans, so a killed lab's children stay zombies for ever.
 */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
