import type { Command } from '@commander-js/extra-typings';
import type { ReleasesResult } from '@plumb/shared';
import { dropletFlag, groupFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { onDroplets } from './group-run.js';

export const text = (r: ReleasesResult) => r.releases.map((x) => `${x.live ? '*' : ' '} ${x.id}  ${x.createdAt}  ${x.files} files${x.digest ? `  content ${x.digest.slice(0, 12)}` : ''}`).join('\n') || 'no releases';

export function register(program: Command) {
  const command = outputFlags(program
    .command('releases')
    .argument('<name>', 'API name')
    .description("an API's releases kept on the droplet (the last 5), oldest first")
    .addOption(dropletFlag())
    .addOption(groupFlag('each one\'s releases; the same content shows the same "content" hash')))
    .action((name, { group, ...o }) => onDroplets(o, group, 'together', async (ctx, droplet) => (await import('../commands/api.js')).releases(name, { droplet }, ctx), text));
  helpFooter(command, ['plumb releases hello', 'plumb releases hello --json', 'plumb releases hello --group web']);
}
