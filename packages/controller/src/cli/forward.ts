import type { Command } from '@commander-js/extra-typings';
import { dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = outputFlags(program
    .command('forward')
    .argument('<name>', 'API name')
    .description('serve API NAME at / too')
    .addOption(dropletFlag()))
    .action((name, o) => output(o, async (ctx) => (await import('../commands/api.js')).forward(name, o, ctx), (r) => `/ now serves ${r.forward}`));
  helpFooter(command, ['plumb forward hello', 'plumb forward hello --droplet api-1']);
}
