import type { Command } from '@commander-js/extra-typings';
import { LogLines, type LogEntry } from '@plumb/shared';
import { dropletFlag, wholeNumber } from './flags.js';
import { helpFooter } from './help.js';
import { quietContext } from './run.js';
import { terminalSafe } from '../output/terminal.js';

export const line = (e: LogEntry) => `${new Date(e.time / 1000).toISOString()} ${terminalSafe(e.unit.replace(/\.service$/, ''))}  ${terminalSafe(e.message)}`;

export function register(program: Command) {
  const command = program
    .command('logs')
    .argument('<name>', 'API name')
    .description("an API's log (journald), from the droplet")
    .option('-f, --follow', 'keep printing new lines until Ctrl-C')
    .option('-n, --lines <n>', 'how many recent lines', wholeNumber(LogLines), 50)
    .option('--since <time>', 'only since then, e.g. "10 min ago"')
    .addOption(dropletFlag())
    .option('--json', 'one JSON object per line')
    .action(async (name, { json, ...o }) => {
      const { logs } = await import('../commands/logs.js');
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      await logs({ name, ...o }, (e) => process.stdout.write(`${json ? JSON.stringify(e) : line(e)}\n`), stop.signal, await quietContext());
    });
  helpFooter(command, ['plumb logs hello -n 20', "plumb logs hello -f --since '10 min ago'"]);
}
