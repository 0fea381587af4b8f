import { setTimeout as sleep } from 'node:timers/promises';
import { readFile } from 'node:fs/promises';
import { AGENT_SHUTDOWN_GRACE_MS, HEARTBEAT_INTERVAL_MS, MONITOR_INTERVAL_MS, MONITOR_RESTART_WINDOW_MS, type AgentEvent } from '@plumb/shared';
import { log } from '../log.js';
import { apiLock, type Locks } from '../ops/context.js';
import { isHealthy, probe } from '../ops/health.js';
import { restoreFirewallIfLost, restoreServingIfLost } from '../ops/routing.js';
import { spareCrashEvent } from '../ops/spare.js';
import type { ApiRecord, StateStore } from '../state.js';
import { layout } from '../system/layout.js';
import * as systemd from '../system/systemd.js';
import type { EventLog } from './events.js';
import { certificates, processCpuSeconds } from './heartbeat.js';
import { certificateEvents, monitorRules, step, type Observation } from './policy.js';
import { WorkerWatches, type Remembered } from './watches.js';
import { Alerter, type DropletIdentity } from './webhook.js';

export interface MonitorOptions {
  state: StateStore;
  locks: Locks;
  events: EventLog;
  droplet: DropletIdentity;
}

export interface Monitor {
  /** Stops checking (checks under way finish, bounded) and stops sending alerts. */
  stop(): Promise<void>;
}

/**
 * The agent's own watch over its APIs (docs/health.md). Every MONITOR_INTERVAL_MS each API's
 * workers, as the state lists them, are looked at: systemd's view of the unit and an HTTP check
 * on loopback. Each API is checked under its lock, so never while a deploy, rollback, scale or
 * restart of it runs, and a worker a rollout took out of the state is not looked at again.
 */
export function startMonitor(opts: MonitorOptions): Monitor {
  const watches = new WorkerWatches(opts.state.get().apis);
  const checking = new Map<string, Promise<void>>();
  const expiries = new Map<string, string>();
  let lastCertificateLook = 0;
  const looking = new Set<string>();
  let stopped = false;
  const alerter = new Alerter(opts.events, () => opts.state.get().alertWebhook, opts.droplet);
  const unsubscribe = opts.events.subscribe((event) => alerter.notify(event));

  const live = (api: string, port: number) => opts.state.get().apis[api]?.workers.some((w) => w.port === port) ?? false;

  async function observe(api: ApiRecord, port: number): Promise<Observation> {
    const unit = await systemd.unitState(layout.instanceUnit(api.name, port));
    const since = unit.since ? Date.parse(unit.since) : NaN;
    let answer: Observation['answer'] = null;
    if (unit.active === 'active') {
      const status = await probe(port, api.healthPath ?? '/');
      answer = isHealthy(status, api.healthPath) ? { ok: true, status } : { ok: false, detail: status === undefined ? `no HTTP answer on port ${port}` : `${api.healthPath ?? '/'} answered ${status}` };
    }
    const stat = unit.pid === null ? '' : await readFile(`/proc/${unit.pid}/stat`, 'utf8').catch(() => '');
    const cpuSeconds = stat ? processCpuSeconds(stat) : null;
    return { active: unit.active, sub: unit.sub, result: unit.result, restarts: unit.restarts, pid: unit.pid, activeSince: Number.isNaN(since) ? null : since, cpuSeconds, answer };
  }

  /** What the event log last said of a worker: so a restarted agent picks up where it was. */
  function remembered(api: string, port: number, now: number): Remembered {
    const mine = opts.events.after(null).filter((e: AgentEvent) => e.api === api && e.port === port);
    const lastSaid = mine.filter((e) => e.kind === 'up' || e.kind === 'down').at(-1)?.kind;
    const agentRestarts = mine.filter((e) => e.kind === 'restarted' && e.by === 'agent').map((e) => Date.parse(e.time)).filter((t) => now - t < MONITOR_RESTART_WINDOW_MS);
    return { reported: lastSaid === 'up' || lastSaid === 'down' ? lastSaid : null, agentRestarts };
  }

  async function checkApi(name: string): Promise<void> {
    const api = opts.state.get().apis[name];
    if (!api || stopped) return;
    const seen = await Promise.all(
      api.workers.map(async (w) => {
        try {
          return { port: w.port, obs: await observe(api, w.port) };
        } catch (err) {
          log.warn('monitor could not look at a worker', { api: name, port: w.port, error: (err as Error).message });
          return undefined;
        }
      }),
    );
    // Workers a rollout or a remove took away, inherited ones never looked at included.
    watches.forget((a, port) => a === name && !api.workers.some((w) => w.port === port));
    const rules = monitorRules(api.healthTimeoutMs);
    for (const s of seen) {
      // A worker a rollout or a remove took out of the state meanwhile is theirs now.
      if (!s || stopped || !live(name, s.port)) continue;
      const now = Date.now();
      const prev = watches.current(name, s.port, s.obs, now, () => remembered(name, s.port, now));
      const { next, events, restart } = step(prev, s.obs, now, rules);
      watches.set(name, s.port, next);
      for (const e of events) opts.events.record({ ...e, api: name, port: s.port });
      if (restart && !stopped && live(name, s.port)) {
        const unit = layout.instanceUnit(name, s.port);
        await systemd.restart(unit).catch((err: Error) => opts.events.record({ kind: 'health-failed', api: name, port: s.port, detail: `the agent could not restart it: ${err.message}` }));
      }
    }
    // The API's warm spare is systemd's to restart; the monitor only says when it keeps crashing.
    const spare = await spareCrashEvent(name).catch((err: Error) => {
      log.warn('monitor could not look at a spare', { api: name, error: err.message });
      return undefined;
    });
    if (spare && !stopped) opts.events.record(spare);
  }

  async function lookAtCertificates(): Promise<void> {
    const now = Date.now();
    if (now - lastCertificateLook < HEARTBEAT_INTERVAL_MS) return;
    lastCertificateLook = now;
    const found = await certificates();
    for (const e of certificateEvents(expiries, found, opts.events.after(null), now)) opts.events.record(e);
    expiries.clear();
    for (const c of found) expiries.set(c.name, c.expiresAt);
  }

  /** Runs `look` unless the last one of that kind is still under way. */
  function lookOnce(kind: string, look: () => Promise<string[]>, what: string): void {
    if (looking.has(kind)) return;
    looking.add(kind);
    void look()
      .then((restored) => restored.length > 0 && log.warn('put back what serving needs', { restored: restored.join(', ') }))
      .catch((err: Error) => log.warn(`monitor could not look at ${what}`, { error: err.message }))
      .finally(() => looking.delete(kind));
  }

  function tick(): void {
    if (stopped) return;
    watches.forget((api) => !opts.state.get().apis[api]);
    for (const name of Object.keys(opts.state.get().apis)) {
      // One check per API at a time: a check waiting for a deploy's lock is not queued twice.
      if (checking.has(name)) continue;
      const work = opts.locks
        .with(apiLock(name), () => checkApi(name))
        .catch((err: Error) => log.warn('monitor check failed', { api: name, error: err.message }))
        .finally(() => checking.delete(name));
      checking.set(name, work);
    }
    // Each on its own: a slow `ufw reload` must not keep the nftables table from being put back.
    lookOnce('routing', () => restoreServingIfLost(opts), 'nftables and nginx');
    lookOnce('firewall', () => restoreFirewallIfLost(opts), 'ufw');
    void lookAtCertificates().catch((err: Error) => log.warn('monitor could not read certificates', { error: err.message }));
  }

  const timer = setInterval(tick, MONITOR_INTERVAL_MS);
  log.info('monitor started', { interval_ms: MONITOR_INTERVAL_MS });
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      unsubscribe();
      alerter.stop();
      const grace = sleep(AGENT_SHUTDOWN_GRACE_MS, undefined, { ref: false });
      await Promise.race([Promise.allSettled([...checking.values()]), grace]);
    },
  };
}
