import type { Command } from '@commander-js/extra-typings';
import type { ScaleResult } from '@plumb/shared';
import { WORKER_COUNT } from '@plumb/shared/core';
import { dropletFlag, groupFlag, outputFlags, waitFlag, wholeNumber } from './flags.js';
import { onDroplets } from './group-run.js';
import { helpFooter } from './help.js';
import { drainText, seconds } from '../output/format.js';

export const text = (r: ScaleResult) => [`${r.name}: ${r.from} -> ${r.to} workers in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n');

export function register(program: Command) {
  const command = outputFlags(program
    .command('scale')
    .argument('<name>', 'API name')
    .argument('<workers>', 'how many R workers (1 to 16)', wholeNumber(WORKER_COUNT))
    .description('run N R workers for an API, without downtime')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .addOption(groupFlag('one after another, stopping at the first failure')))
    .action((name, workers, { group, ...o }) => onDroplets(o, group, 'rolling', async (ctx, droplet) => (await import('../commands/api.js')).scale(name, workers, { ...o, droplet }, ctx), text));
  helpFooter(command, ['plumb scale hello 4', 'plumb scale hello 1 --wait --droplet api-1', 'plumb scale hello 2 --group web']);
}
