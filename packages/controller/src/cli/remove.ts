import type { Command } from '@commander-js/extra-typings';
import type { RemoveResult } from '@plumb/shared';
import { confirm } from './confirm.js';
import { dropletFlag, groupFlag, outputFlags, yesFlag } from './flags.js';
import { onDroplets } from './group-run.js';
import { helpFooter } from './help.js';

export const text = (r: RemoveResult) => `removed ${r.name}${r.wasForwarded ? ' (and the forward of / to it)' : ''}${r.keptFiles ? '; its files are kept' : ''}`;

export function register(program: Command) {
  const command = outputFlags(program
    .command('remove')
    .argument('<name>', 'API name')
    .description('take an API off the droplet: its workers, unit, nginx location and files (data/ too, unless --keep-files)')
    .option('--keep-files', 'leave /var/plumber/NAME on the droplet')
    .addOption(dropletFlag())
    .addOption(groupFlag('one after another, stopping at the first failure'))
    .addOption(yesFlag()))
    .action(async (name, { group, ...o }) => {
      const files = o.keepFiles ? 'its files stay' : `its files go, data/ included`;
      if (group !== undefined) await confirm(o, `remove ${name}`, `Remove the API ${name} from every droplet of group ${group} (${files})? [y/N]`);
      return onDroplets(o, group, 'rolling', async (ctx, droplet) => {
        if (group === undefined) {
          // Asked once the droplet is known (it may be chosen at a prompt), and not looked up again.
          const one = await ctx.droplets.find(droplet);
          await confirm(o, `remove ${name}`, `Remove the API ${name} from ${one.name} (${files})? [y/N]`);
          droplet = String(one.id);
        }
        return (await import('../commands/api.js')).remove(name, { ...o, droplet }, ctx);
      }, text);
    });
  helpFooter(command, ['plumb remove hello', 'plumb remove hello --keep-files --yes --droplet api-1', 'plumb remove hello --group web --yes']);
}
