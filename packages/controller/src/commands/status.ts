import type { StatusResult } from '@plumb/shared';
import type { Context } from '../context.js';
import { withAgent } from '../connect.js';

export interface DropletStatus {
  droplet: string;
  address: string;
  /** Set when the agent could not be asked; the rest is then missing. */
  error?: string;
  status?: StatusResult;
}

/** Each droplet's APIs and health, as its agent reports them (one droplet, or all plumb knows). */
export async function status(opts: { droplet?: string }, ctx: Context): Promise<DropletStatus[]> {
  const droplets = opts.droplet === undefined ? await ctx.droplets.list() : [await ctx.droplets.find(opts.droplet)];
  return Promise.all(
    droplets.map(async (d) => {
      try {
        const status = await withAgent(ctx, String(d.id), ({ connection }) => connection.request<StatusResult>({ type: 'status' }));
        return { droplet: d.name, address: d.ipv4, status };
      } catch (err) {
        return { droplet: d.name, address: d.ipv4, error: (err as Error).message };
      }
    }),
  );
}
