import { readFile } from 'node:fs/promises';
import { DRAIN_POLL_MS, pollUntil } from '@plumb/shared';
import { log } from '../log.js';
import { events } from '../monitor/events.js';
import type { DrainingWorker } from '../state.js';
import { SHARED, type OpContext } from './context.js';
import { retireWorker } from './workers.js';

/**
 * The drain after a switch. The old workers get no new connection (the nftables map sends those
 * to the new ones), so each is idle once no connection to its port is open: then it stops. One
 * that still has connections at its `until` (a long request, an open WebSocket) is stopped anyway,
 * and that is recorded in the event log. A drain outlives the request that started it, and the
 * agent picks up the ones in its state when it starts again.
 */

/** Drains under way, by `NAME@PORT`, each resolving to the connections it had to cut. */
const running = new Map<string, Promise<number>>();

/** Stops each worker once idle, or at its `until`; resolves to the connections cut. */
export async function drainWorkers(name: string, workers: DrainingWorker[], ctx: OpContext): Promise<number> {
  const cut = await Promise.all(workers.map((w) => drainOne(name, w, ctx)));
  return cut.reduce((a, b) => a + b, 0);
}

/**
 * Every drain the state lists: at agent start, so an agent restart mid-drain still stops the old
 * workers. Per API with a drain: settles once its workers have stopped (the API's spare waits for it).
 */
export function resumeDrains(ctx: OpContext): Map<string, Promise<number>> {
  const drains = new Map<string, Promise<number>>();
  for (const api of Object.values(ctx.state.get().apis)) if (api.draining.length > 0) drains.set(api.name, drainWorkers(api.name, api.draining, ctx));
  return drains;
}

function drainOne(name: string, worker: DrainingWorker, ctx: OpContext): Promise<number> {
  const key = `${name}@${worker.port}`;
  const already = running.get(key);
  if (already) return already;
  const work = (async () => {
    const until = Date.parse(worker.until);
    // A `plumb remove` meanwhile stopped it already, and its port may serve a new deploy by now.
    const mine = () => ctx.state.get().apis[name]?.draining.some((d) => d.port === worker.port) ?? false;
    let open = 0;
    await pollUntil(
      async () => {
        open = await openConnections(worker.port);
        return open === 0 || !mine() ? true : undefined;
      },
      { timeoutMs: until - Date.now(), intervalMs: DRAIN_POLL_MS },
    );
    if (!mine()) return 0;
    await retireWorker(name, worker.port);
    if (open > 0) {
      const timeout = ctx.state.get().apis[name]?.drainTimeoutMs;
      const detail = `stopped the previous worker with ${open} connection${open === 1 ? '' : 's'} still open (requests cut) at the end of its ${timeout === undefined ? '' : `${timeout / 1000} s `}drain (release ${worker.release})`;
      events.record({ kind: 'drain-cut', api: name, port: worker.port, detail });
      log.warn('drain cut', { api: name, port: worker.port, connections: open });
    }
    await ctx.locks.with(SHARED, () =>
      ctx.state.update((s) => {
        const api = s.apis[name];
        return api ? { ...s, apis: { ...s.apis, [name]: { ...api, draining: api.draining.filter((d) => d.port !== worker.port) } } } : s;
      }),
    );
    return open;
  })()
    .catch((err: Error) => {
      log.warn('drain failed', { api: name, port: worker.port, error: err.message });
      return 0;
    })
    .finally(() => running.delete(key));
  running.set(key, work);
  return work;
}

/**
 * Connections a worker is serving: sockets on its port that are established (or half-way
 * there), from the kernel's table. nginx opens one per request, so none means no request in flight.
 */
export async function openConnections(port: number): Promise<number> {
  let open = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (!local || !state) continue;
      const localPort = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
      if (localPort === port && (state === TCP_ESTABLISHED || state === TCP_SYN_RECV)) open++;
    }
  }
  return open;
}

const TCP_ESTABLISHED = '01';
const TCP_SYN_RECV = '03';
