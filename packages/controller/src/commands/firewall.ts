import { ValidationError, type FirewallResult } from '@plumb/shared';
import type { Context } from '../context.js';
import { withAgent } from '../agent/connect.js';

export interface FirewallOptions {
  action: string;
  droplet?: string;
}

const ACTIONS = { 'open-ssh': 'open', 'close-ssh': 'close' } as const;

/** SSH (22) in or out of the droplet's ufw, over the agent's socket (so closing it never locks plumb out). */
export async function firewall(opts: FirewallOptions, ctx: Context): Promise<FirewallResult & { droplet: string }> {
  if (!Object.hasOwn(ACTIONS, opts.action)) {
    throw new ValidationError(`unknown firewall action "${opts.action}"`, `use one of: ${Object.keys(ACTIONS).join(', ')}`);
  }
  const ssh = ACTIONS[opts.action as keyof typeof ACTIONS];
  return withAgent(ctx, opts.droplet, async ({ droplet, connection }) => ({ droplet: droplet.name, ...(await connection.request<FirewallResult>({ type: 'firewall', ssh })) }));
}
