#!/usr/bin/env node
import { createRequire } from 'node:module';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

if (process.argv.includes('--version')) {
  console.log(version);
} else {
  console.error('plumb-agent: the droplet agent is not built yet (see the issue "plumb provision")');
  process.exitCode = 1;
}
