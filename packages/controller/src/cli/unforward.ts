import type { Command } from '@commander-js/extra-typings';
import { dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = outputFlags(program
    .command('unforward')
    .description('stop serving an API at /')
    .addOption(dropletFlag()))
    .action((o) => output(o, async (ctx) => (await import('../commands/api.js')).unforward(o, ctx), (r) => (r.was ? `/ no longer serves ${r.was}` : '/ was not forwarded')));
  helpFooter(command, ['plumb unforward', 'plumb unforward --droplet api-1']);
}
