import type { Command } from '@commander-js/extra-typings';
import type { RestartResult } from '@plumb/shared';
import { dropletFlag, groupFlag, outputFlags, waitFlag } from './flags.js';
import { onDroplets } from './group-run.js';
import { helpFooter } from './help.js';
import { count, drainText, seconds } from '../output/format.js';

export const text = (r: RestartResult) => [`restarted ${r.name} (${count(r.workers, 'worker')}) in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n');

export function register(program: Command) {
  const command = outputFlags(program
    .command('restart')
    .argument('<name>', 'API name')
    .description('new R processes for an API: started next to the old ones, which then drain (no request lost)')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .addOption(groupFlag('one after another, stopping at the first failure')))
    .action((name, { group, ...o }) => onDroplets(o, group, 'rolling', async (ctx, droplet) => (await import('../commands/api.js')).restart(name, { ...o, droplet }, ctx), text));
  helpFooter(command, ['plumb restart hello', 'plumb restart hello --wait', 'plumb restart hello --group web']);
}
