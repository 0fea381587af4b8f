import type { Command } from '@commander-js/extra-typings';
import { allFlag, dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output, worstExit } from './run.js';
import { seconds } from '../output/format.js';
import type { PerDroplet } from '../agent/connect.js';
import type { Upgraded } from '../commands/upgrade.js';

export function text(rows: PerDroplet<Upgraded>[]): string {
  return rows
    .map((r) =>
      r.error
        ? `${r.droplet}: ${r.error.message}${r.error.hint ? `\n  ${r.error.hint}` : ''}`
        : r.result.outcome === 'up-to-date'
          ? `${r.droplet}: agent ${r.result.to} already up to date`
          : `${r.droplet}: agent ${r.result.outcome} ${r.result.from} -> ${r.result.to} in ${seconds(r.result.tookMs)}; the APIs kept serving`,
    )
    .join('\n');
}

export function register(program: Command) {
  const command = outputFlags(program
    .command('upgrade')
    .description("put this plumb's agent version on the droplet(s); the APIs keep serving, a failing new agent is rolled back by the droplet")
    .addOption(dropletFlag())
    .addOption(allFlag())
    .option('--force', 'also replace a newer agent (a downgrade)'))
    .action(({ json, quiet, ...o }) =>
      output({ json, quiet }, async (ctx) => (await import('../commands/upgrade.js')).upgrade(o, ctx), text, (rows) => worstExit(rows.map((r) => r.error))),
    );
  helpFooter(command, ['plumb upgrade --droplet api-1', 'plumb upgrade --all']);
}
