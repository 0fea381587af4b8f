import type { Command } from '@commander-js/extra-typings';
import { dropletFlag, outputFlags, yesFlag } from './flags.js';
import { confirm } from './confirm.js';
import { helpFooter } from './help.js';
import { dropletNamed } from './droplet-arg.js';
import { output } from './run.js';
import type { DestroyResult } from '../commands/destroy.js';

export const text = (r: DestroyResult) => (r.outcome === 'deleted' ? `destroyed droplet ${r.name} (id ${r.id})` : `droplet ${r.name} (id ${r.id}) was already gone; forgotten`);

export function register(program: Command) {
  const command = outputFlags(program
    .command('destroy')
    .argument('[droplet]', 'name or id (or --droplet)')
    .description('delete a droplet (by name or id) and forget it')
    .addOption(dropletFlag())
    .addOption(yesFlag()))
    .action((positional, o) =>
      output(
        o,
        async (ctx) => {
          // Never "the only droplet": what is deleted is always named.
          const droplet = await ctx.droplets.find(dropletNamed(positional, o.droplet, { required: 'the droplet to destroy' }));
          await confirm(o, `destroy ${droplet.name}`, `Destroy droplet ${droplet.name} (id ${droplet.id}, ${droplet.ipv4}) and everything on it? Type its name to confirm:`, droplet.name);
          return (await import('../commands/destroy.js')).destroy(String(droplet.id), ctx);
        },
        text,
      ),
    );
  helpFooter(command, ['plumb destroy api-1', 'plumb destroy --droplet api-1 --yes'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);
}
