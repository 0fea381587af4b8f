#!/usr/bin/env node
import { createRequire } from 'node:module';
import { Command, CommanderError } from '@commander-js/extra-typings';
import { EXIT } from '@plumb/shared';
import { register as alerts } from './cli/alerts.js';
import { register as completion } from './cli/completion.js';
import { register as deploy } from './cli/deploy.js';
import { register as deps } from './cli/deps.js';
import { register as destroy } from './cli/destroy.js';
import { register as droplets } from './cli/droplets.js';
import { register as firewall } from './cli/firewall.js';
import { register as forward } from './cli/forward.js';
import { register as https } from './cli/https.js';
import { register as keys } from './cli/keys.js';
import { register as logs } from './cli/logs.js';
import { register as packages } from './cli/packages.js';
import { register as provision } from './cli/provision.js';
import { register as releases } from './cli/releases.js';
import { register as remove } from './cli/remove.js';
import { register as repos } from './cli/repos.js';
import { register as restart } from './cli/restart.js';
import { register as rollback } from './cli/rollback.js';
import { register as scale } from './cli/scale.js';
import { register as status } from './cli/status.js';
import { register as unforward } from './cli/unforward.js';
import { register as upgrade } from './cli/upgrade.js';
import { ENVIRONMENT } from './cli/help.js';
import { usageError } from './cli/usage.js';
import { reportError } from './cli/run.js';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

const rootHelp = [
  '',
  'Each command has examples and the environment it reads in its help: plumb COMMAND --help.',
  '',
  'Environment:',
  ...Object.entries(ENVIRONMENT).map(([name, what]) => `  ${name.padEnd(26)}  ${what}`),
  '',
  `Exit codes: ${EXIT.ok} ok, ${EXIT.failure} failure, ${EXIT.usage} usage error or not confirmed, ${EXIT.unreachable} droplet unreachable, ${EXIT.auth} authentication needed (the same with --json).`,
].join('\n');

/** `plumb`: each command lives in cli/NAME.ts (its flags, its call into commands/, its text). */
export function plumbProgram(): Command {
  const program = new Command('plumb')
    .description('put R plumber APIs on DigitalOcean droplets and keep them running')
    .version(version)
    // Parse errors are thrown to the one place that prints errors, below, not printed by commander.
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .addHelpText('after', rootHelp);
  for (const register of [provision, deploy, deps, packages, repos, remove, forward, unforward, restart, releases, rollback, scale, status, logs, https, upgrade, keys, droplets, destroy, firewall, alerts, completion]) {
    register(program);
  }
  return program;
}

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
