import { open } from 'node:fs/promises';
import { AGENT_FEATURES, ApiName, checkEnvValue, checkInput, ENV_VALUE_MAX_CHARS, EnvKey, PlumbError, ValidationError, type SecretsResult, type SecretsSetResult } from '@plumb/shared';
import { agentProgress, type Context } from '../context.js';
import type { AgentConnection } from '../agent/client.js';
import { withAgent } from '../agent/connect.js';

/** The longest value EnvValue accepts, as UTF-8 bytes at most (4 per character), plus a line end. */
const VALUE_MAX_BYTES = ENV_VALUE_MAX_CHARS * 4 + 2;

function needsSecrets(connection: AgentConnection, droplet: string): void {
  if (!connection.hello.features.includes(AGENT_FEATURES.secrets)) {
    throw new PlumbError('AGENT_OUTDATED', `the agent on ${droplet} is too old for secrets`, `run \`plumb upgrade --droplet ${droplet}\``);
  }
}

/** Reads at most `max` bytes: a value is one line, and an endless stdin must not fill memory. */
async function readBounded(stream: AsyncIterable<Buffer | string>, max: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buf.length;
    if (size > max) throw new ValidationError(`the value from ${what} is over ${max} bytes`, `a secret is one line of at most ${ENV_VALUE_MAX_CHARS} characters: put larger data in a file the API reads`);
    chunks.push(buf);
  }
  // What `echo` and editors add at the end is not part of the value.
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/**
 * A secret's value: from --file, else from stdin. Never from the command line, where shell
 * history and `ps` would keep it. A terminal on stdin is refused rather than echoing what is typed.
 */
export async function readSecretValue(opts: { file?: string }, stdin: NodeJS.ReadStream = process.stdin): Promise<string> {
  if (opts.file !== undefined) {
    const handle = await open(opts.file, 'r').catch((err: NodeJS.ErrnoException) => {
      throw new ValidationError(`cannot read --file ${opts.file}: ${err.code ?? err.message}`);
    });
    try {
      return await readBounded(handle.createReadStream({ autoClose: false }), VALUE_MAX_BYTES, opts.file);
    } finally {
      await handle.close();
    }
  }
  if (stdin.isTTY) throw new ValidationError('plumb secrets set reads the value from stdin or --file, and stdin is a terminal', 'e.g. `plumb secrets set hello TOKEN < token.txt` or `--file token.txt`');
  const value = await readBounded(stdin, VALUE_MAX_BYTES, 'stdin');
  if (value === '') throw new ValidationError('no value on stdin', 'pipe the value in: `printf %s "$TOKEN" | plumb secrets set hello TOKEN`');
  return value;
}

/** Sets one secret of an API and restarts its workers with it (no request lost); the value is not sent back. */
export async function setSecret(name: string, key: string, value: string, opts: { droplet?: string; wait?: boolean }, ctx: Context): Promise<SecretsSetResult> {
  const api = checkInput(ApiName, name, 'API name');
  const checkedKey = checkInput(EnvKey, key, 'secret name');
  const set = { [checkedKey]: checkEnvValue(value, `secret ${checkedKey}`) };
  return changeSecrets(api, { set, unset: [] }, opts, ctx);
}

/** Removes one secret of an API and restarts its workers without it. */
export async function unsetSecret(name: string, key: string, opts: { droplet?: string; wait?: boolean }, ctx: Context): Promise<SecretsSetResult> {
  const api = checkInput(ApiName, name, 'API name');
  return changeSecrets(api, { set: {}, unset: [checkInput(EnvKey, key, 'secret name')] }, opts, ctx);
}

function changeSecrets(name: string, change: { set: Record<string, string>; unset: string[] }, opts: { droplet?: string; wait?: boolean }, ctx: Context): Promise<SecretsSetResult> {
  return withAgent(ctx, opts.droplet, ({ droplet, connection }) => {
    needsSecrets(connection, droplet.name);
    return connection.request<SecretsSetResult>({ type: 'secrets-set', name, ...change, wait: opts.wait ?? false }, { onProgress: agentProgress(ctx) });
  });
}

/** The names of an API's secrets (values never leave the droplet). */
export async function listSecrets(name: string, opts: { droplet?: string }, ctx: Context): Promise<SecretsResult> {
  const api = checkInput(ApiName, name, 'API name');
  return withAgent(ctx, opts.droplet, ({ droplet, connection }) => {
    needsSecrets(connection, droplet.name);
    return connection.request<SecretsResult>({ type: 'secrets', name: api });
  });
}
