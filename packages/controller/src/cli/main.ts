import { CommanderError } from '@commander-js/extra-typings';
import { EXIT } from '@plumb/shared/core';
import { plumbProgram } from './program.js';
import { reportError, reportIfUnfinished } from './run.js';
import { usageError } from './usage.js';

/** Runs `plumb ARGV`: the exit code goes to process.exitCode, the one place errors are printed is reportError. */
export async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const program = plumbProgram();
  const finished = reportIfUnfinished(json);
  await program.parseAsync(argv, { from: 'user' }).finally(finished).catch((err: unknown) => {
    if (err instanceof CommanderError) {
      // --help and --version end here too, having printed what was asked; `plumb` alone prints the help, as a usage error.
      if (err.exitCode === 0) process.exitCode = EXIT.ok;
      else process.exitCode = err.code === 'commander.help' ? EXIT.usage : reportError(usageError(err, program, argv), json);
      return;
    }
    process.exitCode = reportError(err, json);
  });
}
