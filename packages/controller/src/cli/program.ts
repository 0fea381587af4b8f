import { Command } from '@commander-js/extra-typings';
import { EXIT } from '@plumb/shared/core';
import { register as adopt } from './adopt.js';
import { register as alerts } from './alerts.js';
import { register as completion } from './completion.js';
import { register as deploy } from './deploy.js';
import { register as deps } from './deps.js';
import { register as destroy } from './destroy.js';
import { register as droplets } from './droplets.js';
import { register as firewall } from './firewall.js';
import { register as forget } from './forget.js';
import { register as group } from './group.js';
import { register as forward } from './forward.js';
import { register as https } from './https.js';
import { register as init } from './init.js';
import { register as keys } from './keys.js';
import { register as lb } from './lb.js';
import { register as logs } from './logs.js';
import { register as packages } from './packages.js';
import { register as provision } from './provision.js';
import { register as releases } from './releases.js';
import { register as remove } from './remove.js';
import { register as repos } from './repos.js';
import { register as restart } from './restart.js';
import { register as rollback } from './rollback.js';
import { register as scale } from './scale.js';
import { register as secrets } from './secrets.js';
import { register as status } from './status.js';
import { register as unforward } from './unforward.js';
import { register as uninstall } from './uninstall.js';
import { register as upgrade } from './upgrade.js';
import { ENVIRONMENT } from './help.js';
import { PLUMB_VERSION } from '../plumb-version.js';

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
    .version(PLUMB_VERSION)
    // Parse errors are thrown to the one place that prints errors, below, not printed by commander.
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .addHelpText('after', rootHelp);
  for (const register of [provision, adopt, init, deploy, deps, packages, repos, remove, forward, unforward, restart, releases, rollback, scale, secrets, status, logs, https, upgrade, keys, droplets, group, lb, destroy, forget, uninstall, firewall, alerts, completion]) {
    register(program);
  }
  return program;
}

