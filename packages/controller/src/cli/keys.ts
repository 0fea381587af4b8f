import type { Command } from '@commander-js/extra-typings';
import type { KeysResult } from '@plumb/shared';
import { confirm } from './confirm.js';
import { allFlag, dropletFlag, outputFlags, yesFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output, worstExit } from './run.js';
import type { PerDroplet } from '../agent/connect.js';
import type { ShownKey } from '../commands/keys.js';

export const showText = (r: ShownKey) => `${r.publicKey}\n  (key id ${r.kid}) the owner of a droplet adds it with: plumb keys add --droplet NAME --name YOURNAME ${r.publicKey}`;

/** Prints what each droplet now trusts; a droplet that failed sets the exit code. */
const perDroplet = (verb: string) => ({
  text: async (rows: PerDroplet<KeysResult>[]) => (await import('../commands/keys.js')).keysText(rows, verb),
  exit: (rows: PerDroplet<KeysResult>[]) => worstExit(rows.map((r) => r.error)),
});

export function register(program: Command) {
  const keys = program.command('keys').description('controller keys: let another machine (a teammate, CI) manage droplets, or shut one out');
  helpFooter(keys, ['plumb keys show', 'plumb keys add --droplet api-1 --name alice ed25519:…', 'plumb keys revoke alice --all']);

  const show = outputFlags(keys
    .command('show')
    .description("this machine's public key, to send to a droplet's owner (nothing secret)"))
    .action((o) => output(o, async (ctx) => (await import('../commands/keys.js')).showKey(ctx), showText));
  helpFooter(show, ['plumb keys show', 'plumb keys show --json']);

  const listed = perDroplet('trusts');
  const list = outputFlags(keys
    .command('list')
    .description('the controller keys a droplet trusts')
    .addOption(dropletFlag())
    .addOption(allFlag()))
    .action(({ json, quiet, ...o }) => output({ json, quiet }, async (ctx) => (await import('../commands/keys.js')).listKeys(o, ctx), listed.text, listed.exit));
  helpFooter(list, ['plumb keys list', 'plumb keys list --all --json']);

  const added = perDroplet('key added; it trusts');
  const add = outputFlags(keys
    .command('add')
    .argument('<publicKey>', 'the key, as `plumb keys show` prints it on the other machine')
    .description("trust another machine's key (from its `plumb keys show`) on the droplet(s)")
    .requiredOption('--name <name>', 'whose key it is, e.g. alice or ci')
    .addOption(dropletFlag())
    .addOption(allFlag()))
    .action((key, { json, quiet, ...o }) => output({ json, quiet }, async (ctx) => (await import('../commands/keys.js')).addKey({ ...o, key }, ctx), added.text, added.exit));
  helpFooter(add, ['plumb keys add --droplet api-1 --name ci ed25519:…', 'plumb keys add --all --name alice ed25519:…']);

  const revoked = perDroplet('key revoked; it trusts');
  const revoke = outputFlags(keys
    .command('revoke')
    .argument('<key>', 'its name or key id')
    .description('stop trusting a key (by name or id): its tokens get 401, its open connections close')
    .addOption(dropletFlag())
    .addOption(allFlag())
    .addOption(yesFlag()))
    .action((key, { json, quiet, yes, ...o }) =>
      output(
        { json, quiet },
        async (ctx) => {
          const where = o.all ? 'every droplet' : (await ctx.droplets.find(o.droplet)).name;
          await confirm({ ...(yes ? { yes } : {}) }, `revoke ${key}`, `Stop trusting the key ${key} on ${where}? That machine loses access at once. [y/N]`);
          return (await import('../commands/keys.js')).revokeKey({ ...o, key }, ctx);
        },
        revoked.text,
        revoked.exit,
      ),
    );
  helpFooter(revoke, ['plumb keys revoke alice --droplet api-1', 'plumb keys revoke ci --all --yes']);
}
