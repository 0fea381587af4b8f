import { statfs } from 'node:fs/promises';
import os from 'node:os';
import type { ApiStatus, Hello, StatusResult } from '@plumb/shared';
import { layout } from '../system/layout.js';
import { unitState } from '../system/systemd.js';
import type { OpContext } from './context.js';

/** Every API with what systemd says of its workers, and the droplet's load, memory and disk. */
export async function status(ctx: OpContext, hello: Hello): Promise<StatusResult> {
  const state = ctx.state.get();
  const apis: ApiStatus[] = [];
  for (const api of Object.values(state.apis)) {
    const workers = await Promise.all(
      api.workers.map(async (w) => {
        const unit = await unitState(layout.instanceUnit(api.name, w.port));
        return { port: w.port, state: unit.active, pid: unit.pid, since: unit.since, restarts: unit.restarts };
      }),
    );
    const states = new Set(workers.map((w) => w.state));
    const overall = states.size === 1 ? [...states][0]! : states.has('failed') ? 'degraded' : 'activating';
    apis.push({ name: api.name, path: api.path, release: api.current, state: overall, workers, forwarded: state.forward === api.name, deployedAt: api.deployedAt });
  }
  const disk = await statfs('/');
  return {
    apis: apis.sort((a, b) => a.name.localeCompare(b.name)),
    forward: state.forward,
    hello,
    load: os.loadavg(),
    memory: { totalBytes: os.totalmem(), availableBytes: os.freemem() },
    disk: { totalBytes: disk.blocks * disk.bsize, freeBytes: disk.bavail * disk.bsize },
  };
}
