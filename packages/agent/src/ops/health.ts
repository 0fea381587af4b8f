import http from 'node:http';
import net from 'node:net';
import { HEALTH_INTERVAL_MS, HEALTH_PROBE_INTERVAL_MS, HEALTH_PROBE_TIMEOUT_MS, pollUntil, WORKER_PORT_FIRST, WORKER_PORT_LAST } from '@plumb/shared';
import { unitState } from '../system/systemd.js';

/** One HTTP answer from a worker on loopback, or undefined when nothing answered. */
export function probe(port: number, path: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: HEALTH_PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

/** A healthy answer: 2xx on the API's health path when it has one, else anything below 500 (R and the router are up). */
export function isHealthy(status: number | undefined, healthPath: string | null): status is number {
  return status !== undefined && (healthPath ? status >= 200 && status < 300 : status < 500);
}

export type HealthOutcome = { ok: true; status: number; tookMs: number } | { ok: false; reason: 'exited' | 'timeout' | 'unhealthy'; detail: string };

/**
 * The health gate: waits until the worker answers HTTP (below 500, or 2xx on a health path),
 * and gives up early when systemd says the R process died or restarted.
 */
export async function waitHealthy(unit: string, port: number, healthPath: string | null, timeoutMs: number): Promise<HealthOutcome> {
  const started = Date.now();
  let lastStatus: number | undefined;
  let askedSystemd = -Infinity;
  const settled = await pollUntil<HealthOutcome>(
    async () => {
      const status = await probe(port, healthPath ?? '/');
      lastStatus = status;
      if (isHealthy(status, healthPath)) return { ok: true, status, tookMs: Date.now() - started };
      if (Date.now() - askedSystemd < HEALTH_INTERVAL_MS) return undefined;
      askedSystemd = Date.now();
      const state = await unitState(unit);
      // Started with --no-block: on a busy droplet the start job may wait in systemd's queue, and
      // the unit is inactive until it runs. Inactive with no job left means R ran and ended.
      if (state.active === 'failed' || state.restarts > 0 || (state.active === 'inactive' && !state.queued)) {
        const how = state.result === 'success' ? 'exited' : `failed (${state.result})`;
        return { ok: false, reason: 'exited', detail: `the R process ${how} while starting` };
      }
      return undefined;
    },
    { timeoutMs, intervalMs: HEALTH_PROBE_INTERVAL_MS },
  );
  if (settled) return settled;
  if (lastStatus !== undefined) return { ok: false, reason: 'unhealthy', detail: `${healthPath ?? '/'} answered ${lastStatus} for ${Math.round(timeoutMs / 1000)} s` };
  return { ok: false, reason: 'timeout', detail: `no HTTP answer on port ${port} within ${Math.round(timeoutMs / 1000)} s` };
}

/** Ports for new workers: not used by any worker plumb knows of, and free right now. */
export async function freePorts(count: number, taken: Set<number>): Promise<number[]> {
  const ports: number[] = [];
  for (let port = WORKER_PORT_FIRST; port <= WORKER_PORT_LAST && ports.length < count; port++) {
    if (taken.has(port)) continue;
    if (await isFree(port)) ports.push(port);
  }
  if (ports.length < count) throw new Error(`no free worker port in ${WORKER_PORT_FIRST}-${WORKER_PORT_LAST}`);
  return ports;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
