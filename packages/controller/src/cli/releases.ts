import type { Command } from '@commander-js/extra-typings';
import type { ReleasesResult } from '@plumb/shared';
import { dropletFlag, jsonFlag, quietFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export const text = (r: ReleasesResult) => r.releases.map((x) => `${x.live ? '*' : ' '} ${x.id}  ${x.createdAt}  ${x.files} files`).join('\n') || 'no releases';

export function register(program: Command) {
  const command = program
    .command('releases')
    .argument('<name>', 'API name')
    .description("an API's releases kept on the droplet (the last 5), oldest first")
    .addOption(dropletFlag())
    .addOption(quietFlag())
    .addOption(jsonFlag())
    .action((name, o) => output(o, async (ctx) => (await import('../commands/api.js')).releases(name, o, ctx), text));
  helpFooter(command, ['plumb releases hello', 'plumb releases hello --json']);
}
