import type { Command } from '@commander-js/extra-typings';
import type { RollbackResult } from '@plumb/shared';
import { EXIT } from '@plumb/shared/core';
import type { GroupDeployResult } from '../commands/group.js';
import { dropletFlag, outputFlags, waitFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';
import { drainText, seconds } from '../output/format.js';

export const text = async (r: RollbackResult | GroupDeployResult) => ('group' in r ? (await import('../commands/group.js')).groupText(r, 'rolled back') : singleText(r));
const singleText = (r: RollbackResult) => [`${r.name} is back on release ${r.to} (was ${r.from}) in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n');

export function register(program: Command) {
  const command = outputFlags(program
    .command('rollback')
    .argument('<name>', 'API name')
    .description('switch back to the previous release (or --to ID), through the same health gate as a deploy')
    .option('--to <release>', 'a release id from `plumb releases NAME`')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .option('--group <group>', "undo the group's last deploy of NAME: each droplet it changed goes back to what it ran before"))
    .action((name, { group, ...o }) =>
      output(
        o,
        async (ctx): Promise<RollbackResult | GroupDeployResult> =>
          group === undefined ? (await import('../commands/api.js')).rollback(name, o, ctx) : (await import('../commands/group.js')).rollbackGroup(name, { ...o, group }, ctx),
        text,
        // A member left out because it could not be asked: as a group deploy that cannot ask one, exit 3.
        (r) => (!('group' in r) ? EXIT.ok : !r.ok ? EXIT.failure : r.droplets.some((d) => d.outcome === 'skipped') ? EXIT.unreachable : EXIT.ok),
      ),
    );
  helpFooter(command, ['plumb rollback hello', 'plumb rollback hello --to 20261125T195641Z-86e4', 'plumb rollback hello --group web']);
}
