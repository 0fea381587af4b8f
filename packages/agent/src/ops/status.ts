import { STATUS_EVENTS_MAX, type ApiStatus, type Hello, type StatusResult } from '@plumb/shared';
import { releaseDigest, manifestOf } from '../bundle/delta.js';
import { events } from '../monitor/events.js';
import { heartbeat } from '../monitor/heartbeat.js';
import { layout } from '../system/layout.js';
import { unitStates } from '../system/systemd.js';
import type { ApiRecord } from '../state.js';
import type { OpContext } from './context.js';

/** Every API with what systemd says of its workers, the droplet's heartbeat, and the latest events. */
export async function status(ctx: OpContext, hello: Hello): Promise<StatusResult> {
  const state = ctx.state.get();
  const units = await unitStates(Object.values(state.apis).flatMap((api) => api.workers.map((w) => layout.instanceUnit(api.name, w.port))));
  const apis: ApiStatus[] = [];
  for (const api of Object.values(state.apis)) {
    const workers = api.workers.map((w) => {
      const unit = units.get(layout.instanceUnit(api.name, w.port))!;
      return { port: w.port, state: unit.active, pid: unit.pid, since: unit.since, restarts: unit.restarts };
    });
    const states = new Set(workers.map((w) => w.state));
    const overall = states.size === 1 ? [...states][0]! : states.has('failed') ? 'degraded' : 'activating';
    const draining = api.draining.map((w) => ({ port: w.port, release: w.release, until: w.until }));
    apis.push({ name: api.name, path: api.path, release: api.current, state: overall, workers, draining, forwarded: state.forward === api.name, deployedAt: api.deployedAt, secrets: Object.keys(api.secrets).sort(), digest: await digestOf(api.name, api.current, liveEnv(api)), group: api.group });
  }
  const beat = await heartbeat(state, events.lastId, units);
  return {
    apis: apis.sort((a, b) => a.name.localeCompare(b.name)),
    forward: state.forward,
    hello,
    load: beat.load,
    memory: beat.memory,
    disk: beat.disk,
    heartbeat: beat,
    events: events.latest(STATUS_EVENTS_MAX),
    lastEventId: events.lastId,
  };
}

/** A release's ReleaseDigest from its file list (made once for releases from before lists were kept) and env; null when it cannot be read. */
export async function digestOf(name: string, release: string, env: Record<string, string>): Promise<string | null> {
  return manifestOf(name, release).then((files) => releaseDigest(files, env), () => null);
}

const liveEnv = (api: ApiRecord) => api.releases.find((r) => r.id === api.current)?.env ?? {};
