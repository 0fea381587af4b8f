import type { Command } from '@commander-js/extra-typings';
import { dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { dropletNamed } from './droplet-arg.js';
import { output } from './run.js';
import type { ForgetResult } from '../commands/droplets.js';

export const text = (r: ForgetResult) => `plumb forgot ${r.name}; its agent still runs there${r.external ? '' : ' (and DigitalOcean still bills it: `plumb destroy` deletes a droplet)'}`;

export function register(program: Command) {
  const command = outputFlags(program
    .command('forget')
    .argument('[droplet]', 'name or id (or --droplet)')
    .description('drop a droplet from this controller (its pin and address); nothing on the droplet changes')
    .addOption(dropletFlag()))
    .action((positional, o) => output(o, async (ctx) => (await import('../commands/droplets.js')).forget(dropletNamed(positional, o.droplet, { required: 'the droplet to forget' })!, ctx), text));
  helpFooter(command, ['plumb forget api-1']);
}
