import type { Command } from '@commander-js/extra-typings';
import type { RollbackResult } from '@plumb/shared';
import { dropletFlag, jsonFlag, quietFlag, waitFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';
import { drainText, seconds } from '../output/format.js';

export const text = (r: RollbackResult) => [`${r.name} is back on release ${r.to} (was ${r.from}) in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n');

export function register(program: Command) {
  const command = program
    .command('rollback')
    .argument('<name>', 'API name')
    .description('switch back to the previous release (or --to ID), through the same health gate as a deploy')
    .option('--to <release>', 'a release id from `plumb releases NAME`')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .addOption(quietFlag())
    .addOption(jsonFlag())
    .action((name, o) => output(o, async (ctx) => (await import('../commands/api.js')).rollback(name, o, ctx), text));
  helpFooter(command, ['plumb rollback hello', 'plumb rollback hello --to 20261125T195641Z-86e4']);
}
