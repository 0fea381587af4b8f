import { PlumbError, type ErrorCode, type StatusResult } from '@plumb/shared';
import type { Context } from '../context.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { withAgent } from '../agent/connect.js';
import { SeenEvents } from '../local/seen-events.js';
import { PLUMB_VERSION, upgradeAvailable, versionSkew } from '../agent/version.js';

export interface DropletStatus {
  droplet: string;
  address: string;
  /** Set when the agent could not be asked; the rest is then missing. */
  error?: string;
  /** The error's code (docs/commands.md): AGENT_UNREACHABLE, AGENT_OUTDATED, … */
  code?: ErrorCode;
  /** The agent's version, and this plumb's when it is newer (`plumb upgrade` would install it). */
  agent?: { version: string; plumb: string; upgradeAvailable: string | null };
  status?: StatusResult;
  /** The newest event an earlier look showed (null: none did); `status.events` after it are new. */
  seenEventId?: number | null;
}

/**
 * Each droplet's APIs and health, as its agent reports them (one droplet, or all plumb knows),
 * with its latest events; the newest one is remembered as seen, for the next look (`remember`:
 * false for a group command that reads statuses for its own use).
 */
export async function status(opts: { droplet?: string; members?: KnownDroplet[]; remember?: boolean }, ctx: Context): Promise<DropletStatus[]> {
  const droplets = opts.members ?? (opts.droplet === undefined ? await ctx.droplets.list() : [await ctx.droplets.find(opts.droplet)]);
  const seen = SeenEvents.in(ctx.configDir);
  const before = await seen.all();
  const looked: Record<string, number> = {};
  const startedOver: string[] = [];
  const results = await Promise.all(
    droplets.map(async (d): Promise<DropletStatus> => {
      try {
        const asked = await withAgent(
          ctx,
          String(d.id),
          async ({ connection }) => {
            const agent = { version: connection.head.agentVersion, plumb: PLUMB_VERSION, upgradeAvailable: upgradeAvailable(connection.head.agentVersion) };
            const skew = versionSkew(connection.head, d.name);
            // An agent of another protocol is not asked for more than its hello: say which side to upgrade.
            if (skew) return { agent, error: `${skew.message}; ${skew.hint ?? ''}`, code: skew.code };
            return { agent, status: await connection.request<StatusResult>({ type: 'status' }) };
          },
          { allowSkew: true },
        );
        if (!asked.status) return { droplet: d.name, address: d.ipv4, agent: asked.agent, error: asked.error, code: asked.code };
        const status = asked.status;
        const remembered = before[d.uuid];
        // An id the droplet has not reached yet: its event log started over.
        if (remembered !== undefined && remembered > status.lastEventId) startedOver.push(d.uuid);
        looked[d.uuid] = status.lastEventId;
        return { droplet: d.name, address: d.ipv4, agent: asked.agent, status, seenEventId: remembered === undefined || remembered > status.lastEventId ? null : remembered };
      } catch (err) {
        return { droplet: d.name, address: d.ipv4, error: (err as Error).message, code: err instanceof PlumbError ? err.code : 'INTERNAL' };
      }
    }),
  );
  // Remembering is a convenience: a config dir that cannot be written must not hide the status.
  if (opts.remember !== false) await seen.remember(looked, startedOver).catch(() => {});
  return results;
}
