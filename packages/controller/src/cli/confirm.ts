import { createInterface } from 'node:readline/promises';
import { PlumbError } from '@plumb/shared';

/**
 * Asks before something that cannot be undone. With --yes it does not ask; where no one can
 * answer (stdin is not a terminal: a script, CI) it refuses rather than guess.
 * `expected`: the answer that confirms (a name to type), or undefined for y/yes.
 */
export async function confirm(opts: { yes?: true }, what: string, question: string, expected?: string): Promise<void> {
  if (opts.yes) return;
  if (!process.stdin.isTTY) throw new PlumbError('CONFIRMATION_NEEDED', `refusing to ${what} without confirmation: stdin is not a terminal`, 'add --yes');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = (await rl.question(`${question} `)).trim();
  rl.close();
  const confirmed = expected === undefined ? /^(y|yes)$/i.test(answer) : answer === expected;
  if (!confirmed) throw new PlumbError('NOT_CONFIRMED', `did not ${what}: ${expected === undefined ? 'not confirmed' : 'the name did not match'}`);
}
