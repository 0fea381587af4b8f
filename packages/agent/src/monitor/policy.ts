import {
  ALERT_CERTIFICATE_DAYS,
  ALERT_RESTARTS,
  ALERT_RESTARTS_WINDOW_MS,
  MONITOR_BUSY_CPU_SECONDS,
  MONITOR_BUSY_MAX_MS,
  MONITOR_FAILURES_BEFORE_RESTART,
  MONITOR_MAX_RESTARTS,
  MONITOR_RESTART_WINDOW_MS,
  type AgentEvent,
  type Heartbeat,
  type WebhookPayload,
} from '@plumb/shared';
import type { EventInput } from './events.js';

/**
 * The monitor's decisions as pure functions of what it saw: when a worker is up or down, when the
 * agent restarts it, which events are alerts. monitor.ts does the looking and the acting.
 */

/** What the monitor remembers of one worker between checks. */
export interface WorkerWatch {
  /** What was last reported: nothing yet, up, or down. */
  health: 'unknown' | 'up' | 'down';
  /** Failed HTTP checks in a row (those while it was busy computing do not count, for a while). */
  failures: number;
  /** Since when it has been failing checks while using CPU, if it is. */
  busySince: number | null;
  /** CPU seconds its process had used at the last check. */
  cpuSeconds: number | null;
  /** systemd's NRestarts and MainPID at the last check: a change means a new R process. */
  restarts: number;
  pid: number | null;
  /** When the current R process started, and whether it has answered since. */
  startedAt: number;
  answered: boolean;
  /** The agent restarted it: the next new process is its own doing, not news. */
  expectNewProcess: boolean;
  /** When the agent restarted it, within the restart window. */
  agentRestarts: number[];
  /** It has told that it stopped restarting this worker (until it answers again). */
  gaveUp: boolean;
}

/** One check of one worker: systemd's view and, when its unit is active, the HTTP answer. */
export interface Observation {
  active: string;
  sub: string;
  result: string;
  restarts: number;
  pid: number | null;
  /** When systemd last saw the unit become active (ms), if known. */
  activeSince: number | null;
  /** CPU seconds (user + system) the R process has used. */
  cpuSeconds: number | null;
  answer: { ok: true; status: number } | { ok: false; detail: string } | null;
}

export interface Rules {
  failuresBeforeRestart: number;
  /** How long a new process may take to answer before failed checks count. */
  startGraceMs: number;
  maxRestarts: number;
  restartWindowMs: number;
  busyCpuSeconds: number;
  busyMaxMs: number;
}

export const monitorRules = (startGraceMs: number): Rules => ({
  failuresBeforeRestart: MONITOR_FAILURES_BEFORE_RESTART,
  startGraceMs,
  maxRestarts: MONITOR_MAX_RESTARTS,
  restartWindowMs: MONITOR_RESTART_WINDOW_MS,
  busyCpuSeconds: MONITOR_BUSY_CPU_SECONDS,
  busyMaxMs: MONITOR_BUSY_MAX_MS,
});

export type WorkerEvent = Omit<EventInput, 'api' | 'port'>;

export interface Step {
  next: WorkerWatch;
  events: WorkerEvent[];
  /** The agent should `systemctl restart` the worker now. */
  restart: boolean;
}

/**
 * A worker seen for the first time (a new deploy, or the agent just started): its process as it
 * is now is the baseline. `reported` is what the event log last said of it (so an agent restart
 * neither repeats a `down` nor forgets to say `up`), `agentRestarts` when the agent restarted it.
 */
export function firstWatch(obs: Observation, now: number, reported: 'up' | 'down' | null = null, agentRestarts: number[] = []): WorkerWatch {
  return {
    health: reported ?? 'unknown',
    failures: 0,
    busySince: null,
    cpuSeconds: obs.cpuSeconds,
    restarts: obs.restarts,
    pid: obs.pid,
    startedAt: obs.activeSince ?? now,
    answered: false,
    expectNewProcess: false,
    agentRestarts,
    gaveUp: false,
  };
}

/**
 * A worker this agent started itself (a deploy, a rollback, a scale, a restart) seen for the first
 * time. Its unit started from 0 restarts: every rollout starts workers on ports no live worker has,
 * a retired worker's unit is reset (`reset-failed` zeroes NRestarts), and a spare is taken only if
 * it never restarted. So restarts seen now happened since it started (it crashed before the
 * monitor's first look reached it, or during the health gate): news, not its baseline.
 */
export const startedWorkerWatch = (obs: Observation, now: number): WorkerWatch => ({ ...firstWatch(obs, now), restarts: 0 });

function describeUnit(obs: Observation): string {
  const failed = obs.result !== 'success' && obs.result !== 'unknown';
  if (obs.sub === 'auto-restart') return `the R process exited${failed ? ` (${obs.result})` : ''}; systemd restarts it in a moment`;
  return `systemd reports it ${obs.active} (${obs.sub}${failed ? `, result ${obs.result}` : ''})`;
}

/** One check: what changed, what to record, and whether to restart the worker. */
export function step(prev: WorkerWatch, obs: Observation, now: number, rules: Rules): Step {
  const events: WorkerEvent[] = [];
  const w: WorkerWatch = { ...prev, agentRestarts: prev.agentRestarts.filter((t) => now - t < rules.restartWindowMs) };

  const systemdRestarted = obs.restarts > prev.restarts;
  const newProcess = obs.pid !== null && obs.pid !== prev.pid;
  if (systemdRestarted) {
    if (w.health !== 'down') events.push({ kind: 'down', detail: `the R process exited${obs.result !== 'success' ? ` (${obs.result})` : ''}; systemd restarted it` });
    events.push({ kind: 'restarted', by: 'systemd', detail: 'systemd started the R process again' });
    w.health = 'down';
  } else if (newProcess && !prev.expectNewProcess) {
    events.push({ kind: 'restarted', by: 'operator', detail: 'a new R process was started outside the monitor (plumb restart, or systemctl)' });
  }
  if (systemdRestarted || newProcess) {
    w.pid = obs.pid;
    w.startedAt = obs.activeSince ?? now;
    w.answered = false;
    w.failures = 0;
    w.busySince = null;
    w.cpuSeconds = null;
    w.expectNewProcess = false;
  }
  w.restarts = obs.restarts;
  const cpuUsed = obs.cpuSeconds !== null && w.cpuSeconds !== null ? obs.cpuSeconds - w.cpuSeconds : 0;
  w.cpuSeconds = obs.cpuSeconds;

  if (obs.active !== 'active' || obs.answer === null) {
    if (w.health !== 'down') events.push({ kind: 'down', detail: describeUnit(obs) });
    w.health = 'down';
    w.failures = 0;
    w.busySince = null;
    w.pid = obs.pid;
    return { next: w, events, restart: false };
  }

  if (obs.answer.ok) {
    if (w.health === 'down') events.push({ kind: 'up', detail: 'answers again' });
    return { next: { ...w, health: 'up', failures: 0, busySince: null, answered: true, gaveUp: false }, events, restart: false };
  }

  const starting = !w.answered && now - w.startedAt < rules.startGraceMs;
  if (starting) return { next: w, events, restart: false };
  const n = rules.failuresBeforeRestart;
  const firstFailure = w.failures === 0 && w.busySince === null;
  const busy = cpuUsed >= rules.busyCpuSeconds;
  const wasBusy = w.busySince !== null;
  w.busySince = busy ? (w.busySince ?? now) : null;
  const busyMinutes = Math.round(rules.busyMaxMs / 60_000);
  if (busy && now - (w.busySince ?? now) < rules.busyMaxMs) {
    if (firstFailure && w.health !== 'down') events.push({ kind: 'health-failed', detail: `${obs.answer.detail}, but R is busy (using CPU): a restart only if it stays so for ${busyMinutes} min` });
    return { next: w, events, restart: false };
  }
  // The first counted failure is said unless it continues a busy spell already said (busy past
  // its limit); a worker that was busy and now hangs without using CPU is a new failure, said even
  // when no good answer was seen in between.
  const firstCounted = w.failures === 0 && !(wasBusy && busy);
  w.failures = Math.min(w.failures + 1, n);
  if (firstCounted && w.health !== 'down') events.push({ kind: 'health-failed', detail: `${obs.answer.detail} (check 1 of ${n} before a restart)` });
  if (w.failures < n) return { next: w, events, restart: false };

  if (w.health !== 'down') events.push({ kind: 'down', detail: `no good answer to ${n} checks in a row: ${obs.answer.detail}` });
  w.health = 'down';
  if (w.agentRestarts.length >= rules.maxRestarts) {
    if (!w.gaveUp) {
      const minutes = Math.round(rules.restartWindowMs / 60_000);
      events.push({ kind: 'health-failed', detail: `still failing after ${w.agentRestarts.length} restarts by the agent within ${minutes} min; not restarting it again until that window has passed` });
      w.gaveUp = true;
    }
    return { next: w, events, restart: false };
  }
  events.push({ kind: 'restarted', by: 'agent', detail: `restarted by plumb-agent after ${n} failed checks: ${obs.answer.detail}` });
  return {
    next: { ...w, failures: 0, busySince: null, answered: false, startedAt: now, expectNewProcess: true, agentRestarts: [...w.agentRestarts, now] },
    events,
    restart: true,
  };
}

/** An event that should reach the alerts webhook, and as which alert; null when it is not one. */
export function alertFor(event: AgentEvent, recent: readonly AgentEvent[], lastRestartsAlert: number | undefined, now: number): WebhookPayload['alert'] | null {
  switch (event.kind) {
    case 'down':
    case 'up':
    case 'certificate-expiring':
    case 'spare-crashing':
      return event.kind;
    case 'restarted': {
      // Restarts someone asked for (plumb restart, systemctl) are not trouble.
      const unasked = (e: AgentEvent) => e.kind === 'restarted' && e.by !== 'operator';
      if (!unasked(event)) return null;
      const inWindow = (e: AgentEvent) => now - Date.parse(e.time) <= ALERT_RESTARTS_WINDOW_MS;
      const count = recent.filter((e) => unasked(e) && e.api === event.api && inWindow(e)).length;
      const alertedLately = lastRestartsAlert !== undefined && now - lastRestartsAlert <= ALERT_RESTARTS_WINDOW_MS;
      return count >= ALERT_RESTARTS && !alertedLately ? 'repeated-restarts' : null;
    }
    default:
      return null;
  }
}

type Certificate = Heartbeat['certificates'][number];

/**
 * Certificate events from two looks at /etc/letsencrypt: `certificate-renewed` when one expires
 * later than it did, `certificate-expiring` when one is within ALERT_CERTIFICATE_DAYS and was not
 * said to be in the last day (`recent` is the event log).
 */
export function certificateEvents(previous: ReadonlyMap<string, string>, now: readonly Certificate[], recent: readonly AgentEvent[], at: number): EventInput[] {
  const found: EventInput[] = [];
  for (const cert of now) {
    const before = previous.get(cert.name);
    if (before !== undefined && Date.parse(cert.expiresAt) > Date.parse(before)) {
      found.push({ kind: 'certificate-renewed', detail: `${cert.name}: renewed, valid until ${cert.expiresAt}` });
    } else if (cert.daysLeft < ALERT_CERTIFICATE_DAYS) {
      const saidToday = recent.some((e) => e.kind === 'certificate-expiring' && e.detail.startsWith(`${cert.name}:`) && at - Date.parse(e.time) < 24 * 3600_000);
      if (!saidToday) found.push({ kind: 'certificate-expiring', detail: `${cert.name}: expires ${cert.expiresAt} (${Math.max(0, Math.floor(cert.daysLeft))} days left; ${cert.domains.join(', ')})` });
    }
  }
  return found;
}
