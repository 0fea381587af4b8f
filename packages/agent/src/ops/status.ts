import { STATUS_EVENTS_MAX, type ApiStatus, type Hello, type StatusResult } from '@plumb/shared';
import { releaseDigest, manifestOf } from '../bundle/delta.js';
import { events } from '../monitor/events.js';
import { heartbeat, residentBytes } from '../monitor/heartbeat.js';
import { SPARE_READY } from '../render/runner.js';
import { pidsThatSaid } from '../system/journal.js';
import { layout } from '../system/layout.js';
import { unitStates, type UnitState } from '../system/systemd.js';
import { liveEnv, sparePolicyOf, type ApiRecord } from '../state.js';
import type { OpContext } from './context.js';
import { restartsWhileWaiting, spareUnits, whyNoSpare } from './spare.js';

/** Every API with what systemd says of its workers, the droplet's heartbeat, and the latest events. */
export async function status(ctx: OpContext, hello: Hello): Promise<StatusResult> {
  const state = ctx.state.get();
  const spareList = spareUnits().filter((s) => state.apis[s.name]);
  const units = await unitStates([...Object.values(state.apis).flatMap((api) => api.workers.map((w) => layout.instanceUnit(api.name, w.port))), ...spareList.map((s) => s.unit)]);
  const spares = await spareStates(spareList, units);
  const apis: ApiStatus[] = [];
  for (const api of Object.values(state.apis)) {
    const workers = api.workers.map((w) => {
      const unit = units.get(layout.instanceUnit(api.name, w.port))!;
      return { port: w.port, state: unit.active, pid: unit.pid, since: unit.since, restarts: unit.restarts };
    });
    const states = new Set(workers.map((w) => w.state));
    const overall = states.size === 1 ? [...states][0]! : states.has('failed') ? 'degraded' : 'activating';
    const draining = api.draining.map((w) => ({ port: w.port, release: w.release, until: w.until }));
    apis.push({ name: api.name, path: api.path, release: api.current, state: overall, workers, draining, forwarded: state.forward === api.name, deployedAt: api.deployedAt, secrets: Object.keys(api.secrets).sort(), digest: await digestOf(api.name, api.current, liveEnv(api)), group: api.group, spare: spares.get(api.name) ?? null, sparePolicy: sparePolicyOf(api), spareWhy: spareWhyOf(api, whyNoSpare) });
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

/**
 * Each API's spare as plumb status shows it: waiting once its R process said so (SPARE_READY, in
 * the journal under its current pid), else starting; restarting while systemd waits to start it
 * again; how many of its restarts came while it waited; its resident memory.
 */
async function spareStates(spareList: ReadonlyArray<{ name: string; port: number; unit: string }>, units: Map<string, UnitState>): Promise<Map<string, NonNullable<ApiStatus['spare']>>> {
  const ready = (await pidsThatSaid({ pids: spareList.flatMap((s) => units.get(s.unit)?.pid ?? []) }, SPARE_READY)) ?? new Set<number>();
  const spares = new Map<string, NonNullable<ApiStatus['spare']>>();
  for (const { name, port, unit } of spareList) {
    const { active, pid, restarts } = units.get(unit)!;
    const state = active === 'active' ? (pid !== null && ready.has(pid) ? 'waiting' : 'starting') : active === 'activating' ? 'restarting' : active;
    const whileWaiting = restarts > 0 ? await restartsWhileWaiting(name, pid) : 0;
    spares.set(name, { port, state, pid, restarts, restartsWhileWaiting: whileWaiting, rssBytes: pid === null ? null : await residentBytes(pid) });
  }
  return spares;
}

/**
 * Why the API has no spare, for plumb status (null: it has one, or it is being decided). A record
 * from before auto kept none unless told: nobody passed --no-spare, the default then was none.
 */
export function spareWhyOf(api: Pick<ApiRecord, 'name' | 'spare' | 'sparePolicy'>, why: (name: string) => string | null): string | null {
  if (api.sparePolicy === undefined && !api.spare) return 'deployed before auto: `plumb deploy --spare auto` turns it on';
  return sparePolicyOf(api) === 'never' ? '--no-spare' : why(api.name);
}

/** A release's ReleaseDigest from its file list (made once for releases from before lists were kept) and env; null when it cannot be read. */
export async function digestOf(name: string, release: string, env: Record<string, string>): Promise<string | null> {
  return manifestOf(name, release).then((files) => releaseDigest(files, env), () => null);
}
