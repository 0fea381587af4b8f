import type { Command } from '@commander-js/extra-typings';
import { dropletFlag, jsonFlag, quietFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = program
    .command('firewall')
    .description("open or close SSH (22) in the droplet's firewall; 80, 443 and the agent port stay open")
    .argument('<action>', 'open-ssh or close-ssh')
    .addOption(dropletFlag())
    .addOption(quietFlag())
    .addOption(jsonFlag())
    .action((action, { json, quiet, ...o }) =>
      output(
        { json, quiet },
        async (ctx) => (await import('../commands/firewall.js')).firewall({ action, ...o }, ctx),
        (r) => `${r.droplet}: SSH is ${r.ssh}${r.changed ? '' : ' (it was already)'}; the firewall lets in ${r.allowed.join(', ')}`,
      ),
    );
  helpFooter(command, ['plumb firewall close-ssh', 'plumb firewall open-ssh --droplet api-1']);
}
