#!/usr/bin/env node
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { PlumbError } from '@plumb/shared';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

const program = new Command('plumb')
  .description('put R plumber APIs on DigitalOcean droplets and keep them running')
  .version(version);

program.parseAsync().catch((err: unknown) => {
  if (err instanceof PlumbError) {
    console.error(`plumb: ${err.message}${err.hint ? `\n  ${err.hint}` : ''}`);
  } else {
    console.error(err);
  }
  process.exitCode = 1;
});
