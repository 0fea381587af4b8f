import type { Command } from '@commander-js/extra-typings';
import { EXIT } from '@plumb/shared/core';
import { outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const group = program.command('group').description('a group of droplets (the DigitalOcean tag plumb-group:NAME) kept in step');
  const sync = outputFlags(group
    .command('sync')
    .argument('<group>', 'group name')
    .description("bring every droplet of the group to the group's current release of each API (a droplet that was off during a deploy, or joined later), copied from the droplet that runs it"))
    .action((name, o) =>
      output(
        o,
        async (ctx) => (await import('../commands/group-sync.js')).syncGroup(name, {}, ctx),
        async (r) => (await import('../commands/group-sync.js')).syncText(r),
        (r) => (r.ok ? EXIT.ok : EXIT.failure),
      ),
    );
  helpFooter(sync, ['plumb group sync web', 'plumb status --group web']);
}
