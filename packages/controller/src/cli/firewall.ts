import type { Command } from '@commander-js/extra-typings';
import { confirm } from './confirm.js';
import { dropletFlag, outputFlags, yesFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = outputFlags(program
    .command('firewall')
    .description("open or close SSH (22) in the droplet's firewall; 80, 443 and the agent port stay open")
    .argument('<action>', 'open-ssh or close-ssh')
    .addOption(dropletFlag())
    .addOption(yesFlag()))
    .action((action, { json, quiet, yes, ...o }) =>
      output(
        { json, quiet },
        async (ctx) => {
          // Closing SSH shuts out every way in but plumb's own: asked first, like remove and destroy.
          if (action === 'close-ssh') {
            const droplet = await ctx.droplets.find(o.droplet);
            await confirm({ ...(yes ? { yes } : {}) }, `close SSH on ${droplet.name}`, `Close SSH (22/tcp) on ${droplet.name}? Only plumb will reach it. [y/N]`);
          }
          return (await import('../commands/firewall.js')).firewall({ action, ...o }, ctx);
        },
        (r) => `${r.droplet}: SSH is ${r.ssh}${r.changed ? '' : ' (it was already)'}; the firewall lets in ${r.allowed.join(', ')}`,
      ),
    );
  helpFooter(command, ['plumb firewall close-ssh', 'plumb firewall close-ssh --droplet api-1 --yes', 'plumb firewall open-ssh --droplet api-1']);
}
