#!/usr/bin/env node
import { createRequire } from 'node:module';

const argv = process.argv.slice(2);

// `plumb --version` loads nothing else (scripts and prompts call it; every module costs start-up time).
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  process.stdout.write(`${(createRequire(import.meta.url)('../package.json') as { version: string }).version}\n`);
} else {
  await (await import('./cli/main.js')).main(argv);
}
