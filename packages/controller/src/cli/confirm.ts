import { createInterface } from 'node:readline/promises';
import { PlumbError, ValidationError } from '@plumb/shared/core';

/**
 * Asks before something that cannot be undone. With --yes it does not ask; where no one can
 * answer (stdin is not a terminal: a script, CI) it refuses rather than guess.
 * `expected`: the answer that confirms (a name to type), or undefined for y/yes.
 */
export async function confirm(opts: { yes?: true }, what: string, question: string, expected?: string): Promise<void> {
  if (opts.yes) return;
  if (!process.stdin.isTTY) throw new PlumbError('CONFIRMATION_NEEDED', `refusing to ${what} without confirmation: stdin is not a terminal`, 'add --yes');
  const answer = (await askLine(`${question} `)).trim();
  const confirmed = expected === undefined ? /^(y|yes)$/i.test(answer) : answer === expected;
  if (!confirmed) throw new PlumbError('NOT_CONFIRMED', `did not ${what}: ${expected === undefined ? 'not confirmed' : 'the name did not match'}`);
}

/**
 * Reads one line typed at the terminal. Ctrl-C and Ctrl-D give up: NOT_CONFIRMED, nothing changed
 * (readline's own AbortError, or a question left waiting on a closed input, said nothing useful).
 */
export async function askLine(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const cancelled = () => new PlumbError('NOT_CONFIRMED', 'cancelled: nothing was changed');
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.once('close', () => reject(cancelled()));
      rl.question(question).then(resolve, (err: Error) => reject(err.name === 'AbortError' ? cancelled() : err));
    });
  } finally {
    rl.close();
  }
}

/**
 * Reads one line from the terminal without echoing it, as `gh secret set` does: the value stays
 * off the screen, out of scrollback and out of shell history. Enter ends it; Ctrl-C gives up
 * (nothing is changed); a paste arrives as one chunk and is taken whole.
 */
export async function promptHidden(question: string, maxChars: number, input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr): Promise<string> {
  // Raw mode before the question: what is typed (or pasted) the moment the question shows must
  // already find the terminal not echoing (CI saw the value echoed when typed right away).
  input.setRawMode(true);
  output.write(question);
  input.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = '';
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n' || (ch === '\u0004' && value === '')) return finish(() => resolve(value));
          if (ch === '\u0003') return finish(() => reject(new PlumbError('NOT_CONFIRMED', 'cancelled: nothing was changed')));
          if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
          else if (ch >= ' ') value += ch;
          if (value.length > maxChars) return finish(() => reject(new ValidationError(`the value typed is over ${maxChars} characters`, 'put larger data in a file the API reads')));
        }
      };
      const finish = (settle: () => void) => {
        input.off('data', onData);
        settle();
      };
      input.on('data', onData);
    });
  } finally {
    input.setRawMode(false);
    input.pause();
    output.write('\n');
  }
}
