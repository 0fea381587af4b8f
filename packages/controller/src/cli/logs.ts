import type { Command } from '@commander-js/extra-typings';
import type { LogEntry } from '@plumb/shared';
import { LOG_LINES } from '@plumb/shared/core';
import { dropletFlag, groupFlag, wholeNumber } from './flags.js';
import { helpFooter } from './help.js';
import { quietContext, worstExit } from './run.js';
import { terminalSafe } from '../output/terminal.js';

export const line = (e: LogEntry) => `${new Date(e.time / 1000).toISOString()} ${terminalSafe(e.unit.replace(/\.service$/, ''))}  ${terminalSafe(e.message)}`;

export function register(program: Command) {
  const command = program
    .command('logs')
    .argument('<name>', 'API name')
    .description("an API's log (journald), from the droplet")
    .option('-f, --follow', 'keep printing new lines until Ctrl-C')
    .option('-n, --lines <n>', 'how many recent lines', wholeNumber(LOG_LINES), 50)
    .option('--since <time>', 'only since then, e.g. "10 min ago"')
    .addOption(dropletFlag())
    .addOption(groupFlag('each line prefixed with its droplet; -n lines from each, merged by time; -f follows them all'))
    .option('--json', 'one JSON object per line')
    .action(async (name, { json, group, ...o }) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      if (group === undefined) {
        const { logs } = await import('../commands/logs.js');
        await logs({ name, ...o }, (e) => process.stdout.write(`${json ? JSON.stringify(e) : line(e)}\n`), stop.signal, await quietContext());
        return;
      }
      const { logsGroup } = await import('../commands/group-ops.js');
      const run = await logsGroup({ name, group, ...o }, (droplet, e) => process.stdout.write(`${json ? JSON.stringify({ droplet, ...e }) : `${terminalSafe(droplet)}  ${line(e)}`}\n`), stop.signal, await quietContext());
      // The lines of the droplets that answered are out; those that could not be asked are errors.
      for (const d of run.droplets) if (d.error) process.stderr.write(`plumb: ${d.droplet}: ${terminalSafe(d.error.message)}\n`);
      process.exitCode = worstExit(run.droplets.map((d) => d.error));
    });
  helpFooter(command, ['plumb logs hello -n 20', "plumb logs hello -f --since '10 min ago'", 'plumb logs hello --group web -f']);
}
