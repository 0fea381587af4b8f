import { PlumbError } from '@plumb/shared';
import { AgentConnection } from './agent-client.js';
import type { Context } from './context.js';
import type { KnownDroplet } from './droplets-state.js';
import { loadSigningKey } from './keys.js';
import { tokenFor } from './tokens.js';

/** An authenticated socket to a droplet's agent (by name or id; the only one when omitted). */
export async function connectAgent(ctx: Context, which?: string): Promise<{ droplet: KnownDroplet; connection: AgentConnection }> {
  const droplet = await ctx.droplets.find(which);
  if (droplet.fingerprint === null) {
    throw new PlumbError('NOT_ENROLLED', `droplet ${droplet.name} was never enrolled (its provision did not finish)`, `remove it with \`plumb destroy ${droplet.name}\` and provision again`);
  }
  const key = await loadSigningKey(ctx.configDir);
  const connection = await AgentConnection.open({ host: droplet.ipv4, port: droplet.agentPort }, droplet.fingerprint, await tokenFor(key, droplet.uuid));
  return { droplet, connection };
}

/** Runs `work` with a connection that is closed afterwards, whatever happens. */
export async function withAgent<T>(ctx: Context, which: string | undefined, work: (c: { droplet: KnownDroplet; connection: AgentConnection }) => Promise<T>): Promise<T> {
  const agent = await connectAgent(ctx, which);
  try {
    return await work(agent);
  } finally {
    agent.connection.close();
  }
}
