import type { Command } from '@commander-js/extra-typings';
import type { SecretsResult, SecretsSetResult } from '@plumb/shared';
import { dropletFlag, jsonFlag, quietFlag, waitFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';
import { count, drainText, seconds } from '../output/format.js';

export const listText = (r: SecretsResult) => (r.keys.length === 0 ? `${r.name} has no secrets` : r.keys.join('\n'));

export function changedText(r: SecretsSetResult): string {
  const what = [r.set.length ? `set ${r.set.join(', ')}` : '', r.unset.length ? `unset ${r.unset.join(', ')}` : ''].filter(Boolean).join('; ');
  if (!r.restarted) return `${r.name}: ${what}: unchanged, the workers keep running`;
  return [`${r.name}: ${what}; restarted ${count(r.workers, 'worker')} with it in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n');
}

/** `plumb secrets`: environment variables kept apart from --env, whose values never appear in plumb's output. */
export function register(program: Command) {
  const secrets = program
    .command('secrets')
    .description("an API's secrets: environment variables set from stdin or a file, never the command line; plumb shows their names only");
  helpFooter(secrets, ['plumb secrets set hello TOKEN < ./token.txt', 'printf %s "$TOKEN" | plumb secrets set hello TOKEN', 'plumb secrets list hello', 'plumb secrets unset hello TOKEN']);

  const set = secrets
    .command('set')
    .argument('<name>', 'API name')
    .argument('<key>', 'the environment variable, e.g. DB_PASSWORD')
    .description('set a secret (value from stdin, or --file) and restart the workers with it: new ones start, then the old ones drain')
    .option('--file <path>', 'read the value from this file (one line; a final newline is dropped)')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .addOption(quietFlag())
    .addOption(jsonFlag())
    .action((name, key, o) =>
      output(
        o,
        async (ctx) => {
          const commands = await import('../commands/secrets.js');
          return commands.setSecret(name, key, await commands.readSecretValue(o), o, ctx);
        },
        changedText,
      ),
    );
  helpFooter(set, ['plumb secrets set hello TOKEN < ./token.txt', 'printf %s "$TOKEN" | plumb secrets set hello TOKEN', 'plumb secrets set hello DB_PASSWORD --file ./db-password --droplet api-1']);

  const list = secrets
    .command('list')
    .argument('<name>', 'API name')
    .description("the names of an API's secrets (their values stay on the droplet)")
    .addOption(dropletFlag())
    .addOption(quietFlag())
    .addOption(jsonFlag())
    .action((name, o) => output(o, async (ctx) => (await import('../commands/secrets.js')).listSecrets(name, o, ctx), listText));
  helpFooter(list, ['plumb secrets list hello', 'plumb secrets list hello --json']);

  const unset = secrets
    .command('unset')
    .argument('<name>', 'API name')
    .argument('<key>', 'the secret to remove')
    .description('remove a secret and restart the workers without it (no request lost)')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .addOption(quietFlag())
    .addOption(jsonFlag())
    .action((name, key, o) => output(o, async (ctx) => (await import('../commands/secrets.js')).unsetSecret(name, key, o, ctx), changedText));
  helpFooter(unset, ['plumb secrets unset hello TOKEN']);
}
