#!/usr/bin/env node
import { createRequire } from 'node:module';

const argv = process.argv.slice(2);

// `plumb --version` loads nothing else (scripts and prompts call it; every module costs start-up time).
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  process.stdout.write(`${(createRequire(import.meta.url)('../package.json') as { version: string }).version}\n`);
} else {
  await main();
}

async function main(): Promise<void> {
  const [{ CommanderError }, { EXIT }, { plumbProgram }, { reportError }, { usageError }] = await Promise.all([
    import('@commander-js/extra-typings'),
    import('@plumb/shared/core'),
    import('./cli/program.js'),
    import('./cli/run.js'),
    import('./cli/usage.js'),
  ]);
  const json = argv.includes('--json');
  const program = plumbProgram();
  await program.parseAsync(argv, { from: 'user' }).catch((err: unknown) => {
    if (err instanceof CommanderError) {
      // --help and --version end here too, having printed what was asked; `plumb` alone prints the help, as a usage error.
      if (err.exitCode === 0) process.exitCode = EXIT.ok;
      else process.exitCode = err.code === 'commander.help' ? EXIT.usage : reportError(usageError(err, program, argv), json);
      return;
    }
    process.exitCode = reportError(err, json);
  });
}
