import type { Command } from '@commander-js/extra-typings';
import { range } from '@plumb/shared/core';
import { outputFlags, wholeNumber } from './flags.js';
import { helpFooter } from './help.js';
import { one } from './provision.js';
import { output } from './run.js';
import type { AdoptResult } from '../commands/adopt.js';

export const text = (r: AdoptResult) =>
  [
    one(r),
    ...(r.changes.length > 0 ? ['  changed on the host:', ...r.changes.map((c) => `    ${c}`)] : []),
    ...(r.digitalOcean === null
      ? ['  not a DigitalOcean droplet (no answer from its metadata service): listed as external']
      : [r.digitalOcean.tagged ? `  DigitalOcean droplet ${r.digitalOcean.id}: tagged plumb, listed and destroyed like a provisioned one` : `  DigitalOcean droplet ${r.digitalOcean.id}, not tagged (${r.digitalOcean.note ?? ''}); external until then`]),
    ...(r.imported.length > 0
      ? ["  imported from plumber's do_deploy_api() (the old units are stopped and disabled):", ...r.imported.map((a) => `    ${a.name} at ${a.path}: release ${a.release}${a.forwarded ? ', served at /' : ''}`)]
      : []),
  ].join('\n');

export function register(program: Command) {
  const command = outputFlags(program
    .command('adopt')
    .argument('<root@host>', 'the Debian 13 server to take over, as ssh takes it')
    .description('make a server plumb did not create into a plumb droplet, over SSH once (the same base and agent as provision)')
    .option('--ssh-key <path>', 'the private key to log in with (default: your ssh-agent and ~/.ssh keys)')
    .option('--name <name>', 'what plumb calls it (default: the host)')
    .option('--port <n>', 'the SSH port', wholeNumber(range(1, 65535)), 22)
    .option('-y, --yes', "accept the host's SSH key on first contact without asking (for scripts); a changed key is still refused")
    .option('--force', 'take over even if nginx serves port 80, ufw has other rules or /var/plumber exists; lists what it changed')
    .option('--group <name>', 'on DigitalOcean, also tag the droplet into this group (as provision --group)')
    .option('--import', "take over the APIs plumber's do_provision()/do_deploy_api() set up there as plumb APIs, at the same paths, without a failed request"))
    .action((target, { json, quiet, ...o }) =>
      output({ json, quiet }, async (ctx) => (await import('../commands/adopt.js')).adopt({ ...o, target, interactive: process.stdin.isTTY === true }, ctx), text),
    );
  helpFooter(command, ['plumb adopt root@203.0.113.7', 'plumb adopt root@203.0.113.7 --import', 'plumb adopt root@api.example.com --ssh-key ~/.ssh/id_ed25519 --name api-1 --yes'], ['PLUMB_SSH_CONFIG']);
}
