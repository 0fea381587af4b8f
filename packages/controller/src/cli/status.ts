import type { Command } from '@commander-js/extra-typings';
import { ValidationError } from '@plumb/shared/core';
import { dropletFlag, groupFlag, outputFlags } from './flags.js';
import { dropletNamed } from './droplet-arg.js';
import { helpFooter } from './help.js';
import { output, quietContext, worstExit } from './run.js';
import { count } from '../output/format.js';

/** `plumb status --watch`: a line per event on stdout (or JSON per line), news of the connection on stderr. */
async function watchStatus(droplet: string | undefined, o: { json?: true; quiet?: true }): Promise<void> {
  const { watch } = await import('../commands/watch.js');
  const { formatEvent } = await import('../output/print-status.js');
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  const greeted = new Set<string>();
  await watch(
    droplet === undefined ? {} : { droplet },
    (item) => {
      if (o.json) process.stdout.write(`${JSON.stringify(item)}\n`);
      else if ('event' in item) process.stdout.write(`${formatEvent(item.event, item.droplet)}\n`);
      else if (o.quiet) return;
      else if ('notice' in item) process.stderr.write(`plumb: ${item.droplet}: ${item.notice}\n`);
      else if (!greeted.has(item.droplet)) {
        greeted.add(item.droplet);
        const h = item.heartbeat;
        process.stderr.write(`watching ${item.droplet}: load ${h.load.map((l) => l.toFixed(2)).join(' ')}, ${count(h.workers.length, 'R worker')}; Ctrl-C to stop\n`);
      }
    },
    stop.signal,
    await quietContext(),
  );
}

export function register(program: Command) {
  const command = outputFlags(program
    .command('status')
    .argument('[droplet]', 'one droplet (name or id, or --droplet); all when omitted')
    .description('droplets, their APIs and health, and the events since the last look')
    .option('-w, --watch', 'print events as they happen (API down/up, restarts, deploys, ...) until Ctrl-C')
    .addOption(dropletFlag())
    .addOption(groupFlag("each one's status, and which release of each API each runs (DRIFT: not the group's current one)")))
    .action((positional, { group, ...o }) => {
      const droplet = dropletNamed(positional, o.droplet);
      if (group !== undefined) {
        if (o.watch || droplet !== undefined) throw new ValidationError('--group shows every droplet of the group: give no droplet and no --watch with it');
        return output(
          o,
          async (ctx) => (await import('../commands/group-ops.js')).statusGroup(group, ctx),
          async (r) => `${(await import('../commands/group-ops.js')).groupStatusText(r)}\n\n${(await import('../output/print-status.js')).printStatus(r.droplets)}`,
          // Drift is shown, not a failure: the droplets answer; `plumb group sync` is the fix.
          (r) => worstExit(r.droplets.map((d) => (d.error === undefined ? undefined : { code: d.code ?? 'INTERNAL' }))),
        );
      }
      if (o.watch) return watchStatus(droplet, o);
      return output(
        o,
        async (ctx) => (await import('../commands/status.js')).status(droplet === undefined ? {} : { droplet }, ctx),
        async (r) => (await import('../output/print-status.js')).printStatus(r),
        // What could be asked is printed; a droplet that could not be is still a failure (3 when unreachable).
        (r) => worstExit(r.map((d) => (d.error === undefined ? undefined : { code: d.code ?? 'INTERNAL' }))),
      );
    });
  helpFooter(command, ['plumb status', 'plumb status api-1 --json', 'plumb status --watch', 'plumb status --group web']);
}
