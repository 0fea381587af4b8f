import type { Command } from '@commander-js/extra-typings';
import type { SecretsResult, SecretsSetResult } from '@plumb/shared';
import { ENV_VALUE_MAX_CHARS } from '@plumb/shared/core';
import { promptHidden } from './confirm.js';
import { dropletFlag, groupFlag, outputFlags, waitFlag } from './flags.js';
import { onDroplets } from './group-run.js';
import { helpFooter } from './help.js';
import { count, drainText, seconds } from '../output/format.js';

export const listText = (r: SecretsResult) => (r.keys.length === 0 ? `${r.name} has no secrets` : r.keys.join('\n'));

export function changedText(r: SecretsSetResult): string {
  const what = [r.set.length ? `set ${r.set.join(', ')}` : '', r.unset.length ? `unset ${r.unset.join(', ')}` : ''].filter(Boolean).join('; ');
  if (!r.restarted) return `${r.name}: ${what}: unchanged, the workers keep running`;
  return [`${r.name}: ${what}; restarted ${count(r.workers, 'worker')} with it in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n');
}


/**
 * The value, read once for every droplet: typed at a hidden prompt on a terminal, else from
 * stdin or --file (never from the command line, where shell history and `ps` would keep it).
 */
function secretValue(key: string, o: { file?: string }): () => Promise<string> {
  let value: Promise<string> | undefined;
  return () =>
    (value ??= (async () => {
      if (o.file === undefined && process.stdin.isTTY) return promptHidden(`value of ${key} (typing is not shown; Enter ends it): `, ENV_VALUE_MAX_CHARS);
      return (await import('../commands/secrets.js')).readSecretValue(o);
    })());
}

/** `plumb secrets`: environment variables kept apart from --env, whose values never appear in plumb's output. */
export function register(program: Command) {
  const secrets = program
    .command('secrets')
    .description("an API's secrets: environment variables set from stdin or a file, never the command line; plumb shows their names only");
  helpFooter(secrets, ['plumb secrets set hello TOKEN < ./token.txt', 'printf %s "$TOKEN" | plumb secrets set hello TOKEN', 'plumb secrets list hello', 'plumb secrets unset hello TOKEN']);

  const set = outputFlags(secrets
    .command('set')
    .argument('<name>', 'API name')
    .argument('<key>', 'the environment variable, e.g. DB_PASSWORD')
    .description('set a secret (typed at a hidden prompt, or from stdin or --file) and restart the workers with it: new ones start, then the old ones drain')
    .option('--file <path>', 'read the value from this file (one line; a final newline is dropped)')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .addOption(groupFlag('one after another, stopping at the first failure')))
    .action((name, key, { group, ...o }) => {
      const value = secretValue(key, o);
      return onDroplets(o, group, 'rolling', async (ctx, droplet) => (await import('../commands/secrets.js')).setSecret(name, key, await value(), { ...o, droplet }, ctx), changedText);
    });
  helpFooter(set, ['plumb secrets set hello TOKEN', 'plumb secrets set hello TOKEN < ./token.txt', 'printf %s "$TOKEN" | plumb secrets set hello TOKEN', 'plumb secrets set hello DB_PASSWORD --file ./db-password --group web']);

  const list = outputFlags(secrets
    .command('list')
    .argument('<name>', 'API name')
    .description("the names of an API's secrets (their values stay on the droplet)")
    .addOption(dropletFlag())
    .addOption(groupFlag("each one's secret names")))
    .action((name, { group, ...o }) => onDroplets(o, group, 'together', async (ctx, droplet) => (await import('../commands/secrets.js')).listSecrets(name, { droplet }, ctx), listText));
  helpFooter(list, ['plumb secrets list hello', 'plumb secrets list hello --json', 'plumb secrets list hello --group web']);

  const unset = outputFlags(secrets
    .command('unset')
    .argument('<name>', 'API name')
    .argument('<key>', 'the secret to remove')
    .description('remove a secret and restart the workers without it (no request lost)')
    .addOption(waitFlag())
    .addOption(dropletFlag())
    .addOption(groupFlag('one after another, stopping at the first failure')))
    .action((name, key, { group, ...o }) => onDroplets(o, group, 'rolling', async (ctx, droplet) => (await import('../commands/secrets.js')).unsetSecret(name, key, { ...o, droplet }, ctx), changedText));
  helpFooter(unset, ['plumb secrets unset hello TOKEN', 'plumb secrets unset hello TOKEN --group web']);
}
