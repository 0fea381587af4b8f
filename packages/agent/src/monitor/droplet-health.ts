import http from 'node:http';
import { DROPLET_HEALTH_PATH, DROPLET_HEALTH_PORT } from '@plumb/shared';
import { isHealthy, probe } from '../ops/health.js';
import type { StateStore } from '../state.js';

export interface DropletHealth {
  healthy: boolean;
  apis: { name: string; status: number | null; healthy: boolean }[];
}

/**
 * The droplet as a load balancer should see it: healthy only while every API on it answers
 * through its front port (the same way nginx reaches it, by its own health rule). A droplet with
 * no API is not healthy: a new member of a group must not get traffic before it has the group's
 * APIs.
 */
export async function dropletHealth(state: StateStore): Promise<DropletHealth> {
  const apis = await Promise.all(
    Object.values(state.get().apis).map(async (api) => {
      const status = api.frontPort === undefined || api.workers.length === 0 ? undefined : await probe(api.frontPort, api.healthPath ?? '/');
      return { name: api.name, status: status ?? null, healthy: isHealthy(status, api.healthPath) };
    }),
  );
  return { healthy: apis.length > 0 && apis.every((a) => a.healthy), apis };
}

/** nginx proxies DROPLET_HEALTH_PATH on port 80 (and 443) here; loopback only. */
export async function startDropletHealthServer(state: StateStore): Promise<{ close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== DROPLET_HEALTH_PATH) {
      res.writeHead(404).end();
      return;
    }
    void dropletHealth(state).then(
      (health) => res.writeHead(health.healthy ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(health)}\n`),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(DROPLET_HEALTH_PORT, '127.0.0.1', resolve);
  });
  return { close: () => new Promise((resolve) => server.close(() => resolve())) };
}
