import { setTimeout as delay } from 'node:timers/promises';
import { PlumbError, WATCH_RECONNECT_TIMEOUT_MS, type AgentEvent, type Heartbeat, type WatchResult } from '@plumb/shared';
import { RemoteError } from '../agent/client.js';
import type { Context } from '../context.js';
import { withAgent } from '../agent/connect.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { SeenEvents } from '../local/seen-events.js';

/** What `plumb status --watch` hears from a droplet: an event, a heartbeat, or news of the connection. */
export type WatchItem = { droplet: string; event: AgentEvent } | { droplet: string; heartbeat: Heartbeat } | { droplet: string; notice: string };

const RECONNECT_FIRST_MS = 1_000;
const RECONNECT_MAX_MS = 10_000;
/** How long a cancelled watch may take to be answered before the socket is simply closed. */
const CANCEL_GRACE_MS = 2_000;

/**
 * Events from each droplet's agent (one, or all plumb knows) as they happen, until `signal`
 * aborts (Ctrl-C). A lost agent (restarting, rebooting) is reconnected to, and the events recorded
 * meanwhile are asked for, for up to WATCH_RECONNECT_TIMEOUT_MS; not reaching it at all at first is an error.
 */
export async function watch(opts: { droplet?: string }, out: (item: WatchItem) => void, signal: AbortSignal, ctx: Context): Promise<{ events: number }> {
  const droplets = opts.droplet === undefined ? await ctx.droplets.list() : [await ctx.droplets.find(opts.droplet)];
  if (droplets.length === 0) throw new PlumbError('DROPLET_AMBIGUOUS', 'plumb knows no droplet', 'run `plumb provision` first');
  const seen = SeenEvents.in(ctx.configDir);
  // One droplet failing for good stops the watch of all, so the command ends with its error.
  const all = new AbortController();
  signal.addEventListener('abort', () => all.abort(), { once: true });
  try {
    const counts = await Promise.all(
      droplets.map((d) =>
        watchOne(d, out, all.signal, ctx, seen).catch((err: unknown) => {
          all.abort();
          throw err;
        }),
      ),
    );
    return { events: counts.reduce((a, b) => a + b, 0) };
  } finally {
    all.abort();
  }
}

async function watchOne(d: KnownDroplet, out: (item: WatchItem) => void, signal: AbortSignal, ctx: Context, seen: SeenEvents): Promise<number> {
  let since: number | null = null;
  let count = 0;
  let connected = false;
  let lostAt: number | null = null;
  let wait = RECONNECT_FIRST_MS;
  while (!signal.aborted) {
    try {
      await withAgent(ctx, String(d.id), async ({ connection }) => {
        const pending = connection.start<WatchResult>(
          { type: 'watch', sinceEventId: since },
          {
            onEvent: (event) => {
              since = event.id;
              count++;
              out({ droplet: d.name, event });
              void seen.remember({ [d.uuid]: event.id }).catch(() => {});
            },
            onHeartbeat: (heartbeat) => {
              since = Math.max(since ?? 0, heartbeat.lastEventId);
              if (lostAt !== null) out({ droplet: d.name, notice: 'reconnected' });
              connected = true;
              lostAt = null;
              wait = RECONNECT_FIRST_MS;
              out({ droplet: d.name, heartbeat });
            },
          },
        );
        const cancel = () => {
          connection.notify({ type: 'cancel', id: pending.id });
          setTimeout(() => connection.close(), CANCEL_GRACE_MS).unref();
        };
        if (signal.aborted) cancel();
        signal.addEventListener('abort', cancel, { once: true });
        try {
          await pending.result;
        } finally {
          signal.removeEventListener('abort', cancel);
        }
      });
      if (!signal.aborted) throw new PlumbError('WATCH_ENDED', 'the agent ended the watch');
    } catch (err) {
      if (signal.aborted) break;
      const refused = err instanceof RemoteError && err.code !== 'WATCH_TOO_SLOW';
      if (!connected || refused) throw err;
      if (lostAt === null) out({ droplet: d.name, notice: `lost the agent (${(err as Error).message}); reconnecting` });
      lostAt ??= Date.now();
      if (Date.now() - lostAt > WATCH_RECONNECT_TIMEOUT_MS) {
        throw new PlumbError('AGENT_UNREACHABLE', `lost the agent of ${d.name} and could not reach it again within ${WATCH_RECONNECT_TIMEOUT_MS / 60_000} min`, 'see `plumb droplets`');
      }
      await delay(wait, undefined, { signal }).catch(() => {});
      wait = Math.min(wait * 2, RECONNECT_MAX_MS);
    }
  }
  return count;
}
