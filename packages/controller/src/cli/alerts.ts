import type { Command } from '@commander-js/extra-typings';
import type { AlertsResult } from '@plumb/shared';
import { dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function text(r: AlertsResult & { droplet: string }): string {
  if (r.webhook === null) return `alerts from ${r.droplet} are off${r.previous ? ` (they went to ${r.previous})` : ''}`;
  return [
    `alerts from ${r.droplet} go to ${r.webhook}`,
    r.test?.ok ? `  a test alert was delivered (${r.test.detail})` : `  the test alert was not delivered (${r.test?.detail ?? 'not sent'}): alerts stay on; check that the droplet can reach this URL`,
  ].join('\n');
}

export function register(program: Command) {
  const command = outputFlags(program
    .command('alerts')
    .description('make the droplet POST alerts (API down/up, repeated restarts, certificate expiry) to a webhook')
    .option('--webhook <url>', 'where to POST them (JSON); the droplet must reach it')
    .option('--off', 'stop sending alerts')
    .addOption(dropletFlag()))
    .action(({ json, quiet, ...o }) => output({ json, quiet }, async (ctx) => (await import('../commands/alerts.js')).alerts(o, ctx), text));
  helpFooter(command, ['plumb alerts --webhook https://hooks.example.com/plumb', 'plumb alerts --off --droplet api-1']);
}
