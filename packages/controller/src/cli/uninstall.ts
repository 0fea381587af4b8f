import type { Command } from '@commander-js/extra-typings';
import { confirm } from './confirm.js';
import { dropletFlag, outputFlags, yesFlag } from './flags.js';
import { helpFooter } from './help.js';
import { dropletNamed } from './droplet-arg.js';
import { output } from './run.js';
import type { UninstallOutcome } from '../commands/droplets.js';

export const text = (r: UninstallOutcome) => `the agent is being removed from ${r.name} (${r.removing.join(', ')}); its APIs keep serving; plumb forgot it`;

export function register(program: Command) {
  const command = outputFlags(program
    .command('uninstall')
    .argument('[droplet]', 'name or id (or --droplet)')
    .description('remove the plumb agent from a droplet and forget it; its APIs, nginx and packages stay')
    .addOption(dropletFlag())
    .addOption(yesFlag()))
    .action((positional, o) =>
      output(o, async (ctx) => {
        const droplet = await ctx.droplets.find(dropletNamed(positional, o.droplet, { required: 'the droplet to uninstall from' }));
        await confirm(o, `remove the agent from ${droplet.name}`, `Remove the plumb agent from ${droplet.name} (${droplet.ipv4})? plumb cannot reach it afterwards. Type its name to confirm:`, droplet.name);
        return (await import('../commands/droplets.js')).uninstall(droplet.name, ctx);
      }, text),
    );
  helpFooter(command, ['plumb uninstall web-1 --yes']);
}
