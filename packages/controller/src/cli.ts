#!/usr/bin/env node
import { CommanderError } from '@commander-js/extra-typings';
import { EXIT } from '@plumb/shared';
import { plumbProgram } from './cli/program.js';
import { reportError } from './cli/run.js';
import { usageError } from './cli/usage.js';

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const program = plumbProgram();
program
  .parseAsync(argv, { from: 'user' })
  .catch((err: unknown) => {
    if (err instanceof CommanderError) {
      // --help and --version end here too, having printed what was asked; `plumb` alone prints the help, as a usage error.
      if (err.exitCode === 0) process.exitCode = EXIT.ok;
      else process.exitCode = err.code === 'commander.help' ? EXIT.usage : reportError(usageError(err, program, argv), json);
      return;
    }
    process.exitCode = reportError(err, json);
  });
