import { PlumbError, ValidationError } from '@plumb/shared';
import { AgentConnection } from './client.js';
import type { Context } from '../context.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { loadSigningKey } from '../local/keys.js';
import { tokenFor } from './tokens.js';

/** An authenticated socket to a droplet's agent (by name or id; the only one when omitted). */
export async function connectAgent(ctx: Context, which?: string, opts: { allowSkew?: boolean; signal?: AbortSignal } = {}): Promise<{ droplet: KnownDroplet; connection: AgentConnection }> {
  const droplet = await ctx.droplets.find(which);
  // Abandoned while the droplet was looked up (a deploy whose directory was refused): nothing is sent.
  opts.signal?.throwIfAborted();
  if (droplet.fingerprint === null) {
    throw new PlumbError('NOT_ENROLLED', `droplet ${droplet.name} was never enrolled (its provision did not finish)`, `remove it with \`plumb destroy ${droplet.name}\` and provision again`);
  }
  const token = loadSigningKey(ctx.configDir).then((key) => tokenFor(key, droplet.uuid));
  const connection = await AgentConnection.open({ host: droplet.ipv4, port: droplet.agentPort }, droplet.fingerprint, token, { droplet: droplet.name, ...opts });
  return { droplet, connection };
}

/** Runs `work` with a connection that is closed afterwards, whatever happens. */
export async function withAgent<T>(
  ctx: Context,
  which: string | undefined,
  work: (c: { droplet: KnownDroplet; connection: AgentConnection }) => Promise<T>,
  opts: { allowSkew?: boolean } = {},
): Promise<T> {
  return withOpened(connectAgent(ctx, which, opts), work);
}

/** Runs `work` with a connection already opening (connectAgent), closed afterwards, whatever happens. */
export async function withOpened<T>(opening: Promise<{ droplet: KnownDroplet; connection: AgentConnection }>, work: (c: { droplet: KnownDroplet; connection: AgentConnection }) => Promise<T>): Promise<T> {
  const agent = await opening;
  try {
    return await work(agent);
  } finally {
    agent.connection.close();
  }
}

/** The droplets a command for `--droplet NAME` or `--all` acts on (the only one when neither is given). */
export async function chosenDroplets(ctx: Context, opts: { droplet?: string; all?: boolean }): Promise<KnownDroplet[]> {
  if (opts.all && opts.droplet !== undefined) throw new ValidationError('give --droplet NAME or --all, not both');
  if (!opts.all) return [await ctx.droplets.find(opts.droplet)];
  const all = await ctx.droplets.list();
  if (all.length === 0) throw new PlumbError('DROPLET_AMBIGUOUS', 'plumb knows no droplet', 'run `plumb provision` first');
  return all;
}

/** One droplet's outcome in a command run on several: its result, or why it failed. */
export type PerDroplet<T> = { droplet: string; result: T; error?: undefined } | { droplet: string; result?: undefined; error: { code: string; message: string; hint?: string } };

/** Runs `work` on each droplet in turn; with one droplet its error is thrown, with several it is reported beside the others. */
export async function eachDroplet<T>(ctx: Context, opts: { droplet?: string; all?: boolean }, work: (droplet: KnownDroplet) => Promise<T>): Promise<PerDroplet<T>[]> {
  const droplets = await chosenDroplets(ctx, opts);
  const results: PerDroplet<T>[] = [];
  for (const droplet of droplets) {
    try {
      results.push({ droplet: droplet.name, result: await work(droplet) });
    } catch (err) {
      if (!opts.all || !(err instanceof PlumbError)) throw err;
      results.push({ droplet: droplet.name, error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } });
    }
  }
  return results;
}
