import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ALERT_CERTIFICATE_DAYS, ALERT_RESTARTS, ALERT_RESTARTS_WINDOW_MS, MONITOR_BUSY_CPU_SECONDS, MONITOR_BUSY_MAX_MS, MONITOR_FAILURES_BEFORE_RESTART, MONITOR_MAX_RESTARTS, MONITOR_RESTART_WINDOW_MS, type AgentEvent } from '@plumb/shared';
import { alertFor, certificateEvents, firstWatch, monitorRules, startedWorkerWatch, step, type Observation, type WorkerWatch } from '@plumb/agent/monitor/policy';
import { parseVmRss, processCpuSeconds, processUptime } from '@plumb/agent/monitor/heartbeat';
import { WorkerWatches, type Remembered } from '@plumb/agent/monitor/watches';

/** The monitor's decisions (packages/agent/src/monitor/policy.ts), from sequences of what it saw. */

// The agent's own rules (the limits in shared/limits.ts); only the start grace is the API's (its health timeout).
const rules = monitorRules(10_000);
const N = MONITOR_FAILURES_BEFORE_RESTART;
const EVERY = 5_000;
const T0 = 1_000_000_000;
const healthy = (over: Partial<Observation> = {}): Observation => ({ active: 'active', sub: 'running', result: 'success', restarts: 0, pid: 100, activeSince: T0 - 60_000, cpuSeconds: 10, answer: { ok: true, status: 200 }, ...over });
const silent = (over: Partial<Observation> = {}): Observation => healthy({ answer: { ok: false, detail: 'no HTTP answer on port 9000' }, ...over });

/** Runs observations through the policy, one check each `everyMs`; returns what each check decided. */
function run(observations: Observation[], start: WorkerWatch = firstWatch(healthy(), T0, 'up'), everyMs = EVERY) {
  let w = start;
  return observations.map((obs, i) => {
    const s = step(w, obs, T0 + i * everyMs, rules);
    w = s.next;
    return { kinds: s.events.map((e) => (e.by ? `${e.kind}:${e.by}` : e.kind)), restart: s.restart, watch: s.next, events: s.events };
  });
}

describe('monitor policy: when a worker is up, down, restarted', () => {
  test('a healthy worker produces no events', () => {
    assert.deepEqual(run([healthy(), healthy(), healthy()]).flatMap((r) => r.kinds), []);
  });

  test('kill -9 between two checks (systemd restarted it): down, restarted by systemd, then up once it answers', () => {
    const checks = run([healthy(), healthy({ restarts: 1, pid: 101, activeSince: T0 + 4_000, answer: { ok: false, detail: 'no HTTP answer' } }), healthy({ restarts: 1, pid: 101 })]);
    assert.deepEqual(checks.map((c) => c.kinds), [[], ['down', 'restarted:systemd'], ['up']]);
    assert.ok(checks.every((c) => !c.restart), 'systemd already restarted it');
  });

  test('a check that falls in systemd restart delay says down once, then restarted, then up', () => {
    const checks = run([healthy(), healthy({ active: 'activating', sub: 'auto-restart', result: 'signal', pid: null, answer: null }), healthy({ restarts: 1, pid: 101 })]);
    assert.deepEqual(checks.map((c) => c.kinds), [[], ['down'], ['restarted:systemd', 'up']]);
    assert.equal(checks[1]!.events[0]!.detail, 'the R process exited (signal); systemd restarts it in a moment');
  });

  test('a worker the agent started that crashed before the first check (systemd restarted it): down and restarted by systemd at that first check; one that did not: nothing', () => {
    const restarted = healthy({ restarts: 1, pid: 101, activeSince: T0 - 1_000 });
    const starting = { ...restarted, answer: { ok: false as const, detail: 'no HTTP answer on port 9000' } };
    assert.deepEqual(run([starting, restarted], startedWorkerWatch(starting, T0)).map((c) => c.kinds), [['down', 'restarted:systemd'], ['up']]);
    assert.deepEqual(run([restarted], startedWorkerWatch(restarted, T0)).map((c) => c.kinds), [['down', 'restarted:systemd', 'up']], 'all three when it answers already');
    assert.deepEqual(run([healthy(), healthy()], startedWorkerWatch(healthy(), T0)).map((c) => c.kinds), [[], []]);
    // One that was there when the agent started: its restarts are its past (the event log said them, or not).
    assert.deepEqual(run([restarted], firstWatch(restarted, T0, 'up')).map((c) => c.kinds), [[]]);
  });

  test(`a worker that stops answering: health-failed at once, down and restarted by the agent at failed check ${N}, up once the new process answers`, () => {
    const silence = Array.from({ length: N }, () => silent());
    const checks = run([healthy(), ...silence, healthy({ pid: 102, activeSince: T0 + (N + 1) * EVERY, answer: { ok: false, detail: 'starting' } }), healthy({ pid: 102 })]);
    const quiet = Array.from({ length: N - 2 }, () => []);
    assert.deepEqual(checks.map((c) => c.kinds), [[], ['health-failed'], ...quiet, ['down', 'restarted:agent'], [], ['up']]);
    assert.deepEqual(checks.map((c) => c.restart), [false, false, ...quiet.map(() => false), true, false, false]);
    assert.match(checks[N]!.events[1]!.detail, new RegExp(`after ${N} failed checks: no HTTP answer`));
  });

  test('a new process gets the start grace: failed checks count only once it is over (or it has answered)', () => {
    const fresh = firstWatch(healthy({ activeSince: T0 }), T0, null);
    const checks = run([silent({ activeSince: T0 }), silent({ activeSince: T0 }), silent({ activeSince: T0 }), silent({ activeSince: T0 })], fresh, 4_000);
    assert.deepEqual(checks.map((c) => c.watch.failures), [0, 0, 0, 1], 'only the check at 12 s (past the 10 s grace) counts');
  });

  test(`the agent restarts one worker at most ${MONITOR_MAX_RESTARTS} times per ${MONITOR_RESTART_WINDOW_MS / 60_000} min, says once that it stopped, and starts again after the window`, () => {
    let w = firstWatch(healthy(), T0, 'up');
    let now = T0;
    let pid = 100;
    const restarts: number[] = [];
    const gaveUp: string[] = [];
    // Each restart takes the start grace and N failed checks; room for two restarts more than allowed.
    const checks = (MONITOR_MAX_RESTARTS + 2) * (N + Math.ceil(rules.startGraceMs / EVERY) + 1);
    assert.ok(checks * EVERY < MONITOR_RESTART_WINDOW_MS, 'all within one window');
    for (let i = 0; i < checks; i++) {
      now += EVERY;
      const s = step(w, silent({ pid }), now, rules);
      w = s.next;
      if (s.restart) {
        restarts.push(now);
        pid++;
      }
      gaveUp.push(...s.events.filter((e) => /not restarting/.test(e.detail)).map((e) => e.detail));
    }
    assert.equal(restarts.length, MONITOR_MAX_RESTARTS);
    assert.equal(gaveUp.length, 1);
    assert.match(gaveUp[0] ?? '', new RegExp(`after ${MONITOR_MAX_RESTARTS} restarts by the agent within ${MONITOR_RESTART_WINDOW_MS / 60_000} min`));
    now = (restarts[0] ?? now) + MONITOR_RESTART_WINDOW_MS;
    assert.equal(step(w, silent({ pid }), now, rules).restart, true, 'after the window it tries again');
  });

  test(`a worker that misses checks while using ${MONITOR_BUSY_CPU_SECONDS} s of CPU per check is busy, not hung: restarted only once busy for ${MONITOR_BUSY_MAX_MS / 60_000} min`, () => {
    // Exactly the busy threshold per check: the least CPU that still counts as computing.
    const computing = (i: number) => silent({ cpuSeconds: 10 + MONITOR_BUSY_CPU_SECONDS * i });
    const busyChecks = MONITOR_BUSY_MAX_MS / EVERY;
    const checks = run(Array.from({ length: 1 + busyChecks + N + 2 }, (_, i) => (i === 0 ? healthy() : computing(i))));
    assert.deepEqual(checks[1]?.kinds, ['health-failed']);
    assert.match(checks[1]!.events[0]!.detail, new RegExp(`R is busy \\(using CPU\\): a restart only if it stays so for ${MONITOR_BUSY_MAX_MS / 60_000} min`));
    const restartAt = checks.findIndex((c) => c.restart);
    assert.equal(restartAt, 1 + busyChecks + N - 1, 'busy for the limit, then the usual failed checks');
    assert.deepEqual(checks.flatMap((c) => c.kinds), ['health-failed', 'down', 'restarted:agent']);
    const idle = run(Array.from({ length: 1 + N }, (_, i) => (i === 0 ? healthy() : silent({ cpuSeconds: 10 + (MONITOR_BUSY_CPU_SECONDS - 0.01) * i }))));
    assert.equal(idle.findIndex((c) => c.restart), N, 'just under the threshold is a hang: restarted after the usual failed checks');
    const done = run([healthy(), computing(1), computing(2), healthy({ cpuSeconds: 30 })]);
    assert.deepEqual(done.map((c) => c.kinds), [[], ['health-failed'], [], []], 'it answered once the request was done: nothing more to say');
  });

  test('a worker busy computing that then hangs without using CPU (no good answer seen between) is a new failure: said, then down and restarted', () => {
    const computing = (i: number) => silent({ cpuSeconds: 10 + MONITOR_BUSY_CPU_SECONDS * i });
    const stuck = silent({ cpuSeconds: 10 + MONITOR_BUSY_CPU_SECONDS * 2 });
    const checks = run([healthy(), computing(1), computing(2), ...Array.from({ length: N }, () => stuck)]);
    assert.deepEqual(checks.map((c) => c.kinds), [[], ['health-failed'], [], ['health-failed'], ...Array.from({ length: N - 2 }, () => []), ['down', 'restarted:agent']]);
    assert.match(checks[3]!.events[0]!.detail, new RegExp(`check 1 of ${N} before a restart`));
  });

  test('a new process the agent did not start and systemd did not restart: restarted by an operator, not down', () => {
    assert.deepEqual(run([healthy(), healthy({ pid: 200, activeSince: T0 + 3_000 })]).map((c) => c.kinds), [[], ['restarted:operator']]);
  });

  test('the agent restarted: what the event log last said carries over', () => {
    assert.deepEqual(run([healthy()], firstWatch(healthy(), T0, 'down')).map((c) => c.kinds), [['up']], 'a worker last said down says up when it answers');
    assert.deepEqual(run([healthy({ active: 'failed', sub: 'failed', pid: null, answer: null })], firstWatch(healthy(), T0, 'down')).map((c) => c.kinds), [[]], 'no second down');
    assert.deepEqual(run([healthy()], firstWatch(healthy(), T0, null)).map((c) => c.kinds), [[]], 'a new worker coming up is not news (the deploy event is)');
  });

  test('a failed unit is down and left to systemd (no restart by the agent)', () => {
    const checks = run([healthy({ active: 'failed', sub: 'failed', result: 'exit-code', pid: null, answer: null }), healthy({ active: 'failed', sub: 'failed', pid: null, answer: null })]);
    assert.deepEqual(checks.map((c) => [c.kinds, c.restart]), [[['down'], false], [[], false]]);
  });
});

const event = (over: Partial<AgentEvent>): AgentEvent => ({ id: 1, time: new Date(T0).toISOString(), kind: 'restarted', api: 'sum', port: 9000, by: 'systemd', detail: 'x', ...over });

describe("the monitor's memory: workers inherited at the agent's start and workers it started", () => {
  // Both workers' units restarted twice before the first check: the inherited one before this agent ran.
  const restartedTwice = healthy({ restarts: 2, pid: 300 });
  const firstCheck = (watches: WorkerWatches, api: string, port: number, said: Remembered = { reported: 'up', agentRestarts: [] }) => {
    let asked = 0;
    const watch = watches.current(api, port, restartedTwice, T0, () => (asked++, said));
    const s = step(watch, restartedTwice, T0, rules);
    watches.set(api, port, s.next);
    return { kinds: s.events.map((e) => (e.by ? `${e.kind}:${e.by}` : e.kind)), asked };
  };

  test('a worker in the state the agent started with picks up where the event log left it: its restarts are its baseline, not news', () => {
    const watches = new WorkerWatches({ sum: { name: 'sum', workers: [{ port: 9000 }] } });
    assert.deepEqual(firstCheck(watches, 'sum', 9000), { kinds: [], asked: 1 });
    assert.deepEqual(firstCheck(new WorkerWatches({ sum: { name: 'sum', workers: [{ port: 9000 }] } }), 'sum', 9000, { reported: 'down', agentRestarts: [] }).kinds, ['up'], 'last said down: up once it answers');
  });

  test('a worker this agent started (not in the state at its start) that restarted before its first check: down and restarted by systemd', () => {
    const watches = new WorkerWatches({ sum: { name: 'sum', workers: [{ port: 9000 }] } });
    assert.deepEqual(firstCheck(watches, 'sum', 9001), { kinds: ['down', 'restarted:systemd', 'up'], asked: 0 });
    assert.deepEqual(firstCheck(watches, 'other', 9000), { kinds: ['down', 'restarted:systemd', 'up'], asked: 0 }, 'the same port of another API');
  });

  test('a checked worker continues from its watch; an inherited port a rollout took away (never checked) and then reused is a started worker', () => {
    const watches = new WorkerWatches({ sum: { name: 'sum', workers: [{ port: 9000 }, { port: 9001 }] } });
    firstCheck(watches, 'sum', 9000);
    assert.deepEqual(firstCheck(watches, 'sum', 9000), { kinds: [], asked: 0 }, 'its second check');
    watches.forget((api, port) => api === 'sum' && port === 9001);
    assert.deepEqual(firstCheck(watches, 'sum', 9001).kinds, ['down', 'restarted:systemd', 'up']);
    watches.forget((api) => api === 'sum');
    assert.deepEqual(firstCheck(watches, 'sum', 9000).kinds, ['down', 'restarted:systemd', 'up'], 'a removed API deployed again');
  });
});

describe('alerts: which events reach the webhook', () => {
  test('down, up, certificate-expiring and a warm spare that keeps crashing are alerts; health-failed, deploy and a single restart are not', () => {
    assert.equal(alertFor(event({ kind: 'down' }), [], undefined, T0), 'down');
    assert.equal(alertFor(event({ kind: 'spare-crashing', port: null, by: null }), [], undefined, T0), 'spare-crashing');
    assert.equal(alertFor(event({ kind: 'up' }), [], undefined, T0), 'up');
    assert.equal(alertFor(event({ kind: 'certificate-expiring', api: null }), [], undefined, T0), 'certificate-expiring');
    for (const kind of ['health-failed', 'deploy', 'remove', 'rollback', 'certificate-renewed'] as const) assert.equal(alertFor(event({ kind }), [], undefined, T0), null, kind);
    const one = event({});
    assert.equal(alertFor(one, [one], undefined, T0), null);
    const asked = [event({ by: 'operator' }), event({ by: 'operator' }), event({ by: 'operator' })];
    assert.equal(alertFor(asked[2]!, asked, undefined, T0), null, 'restarts someone asked for are not trouble');
  });

  test(`${ALERT_RESTARTS} restarts of one API within the window are "repeated-restarts", said once per window`, () => {
    const at = (minutesAgo: number, api = 'sum') => event({ time: new Date(T0 - minutesAgo * 60_000).toISOString(), api });
    const recent = [at(9), at(5), at(3, 'other'), at(0)];
    assert.equal(alertFor(recent.at(-1)!, recent, undefined, T0), 'repeated-restarts');
    assert.equal(alertFor(recent.at(-1)!, recent, T0 - 60_000, T0), null, 'already said a minute ago');
    assert.equal(alertFor(recent.at(-1)!, [at(12), at(11), at(0)], undefined, T0), null, 'two of them are older than the window');
    assert.ok(ALERT_RESTARTS_WINDOW_MS >= 10 * 60_000 - 1);
  });
});

describe('certificate events', () => {
  const cert = (daysLeft: number, expiresAt = new Date(T0 + daysLeft * 86_400_000).toISOString()) => ({ name: 'api.example.com', domains: ['api.example.com'], expiresAt, daysLeft });

  test('renewed when a certificate expires later than it did', () => {
    const before = new Map([['api.example.com', new Date(T0 + 20 * 86_400_000).toISOString()]]);
    assert.deepEqual(certificateEvents(before, [cert(90)], [], T0).map((e) => e.kind), ['certificate-renewed']);
    assert.deepEqual(certificateEvents(before, [cert(20)], [], T0), []);
  });

  test(`expiring below ${ALERT_CERTIFICATE_DAYS} days, said once a day`, () => {
    const [said] = certificateEvents(new Map(), [cert(3)], [], T0);
    assert.equal(said?.kind, 'certificate-expiring');
    assert.match(said?.detail ?? '', /^api\.example\.com: expires .* \(3 days left; api\.example\.com\)$/);
    const log = [event({ kind: 'certificate-expiring', api: null, port: null, detail: said?.detail ?? '', time: new Date(T0).toISOString() })];
    assert.deepEqual(certificateEvents(new Map(), [cert(3)], log, T0 + 3600_000), [], 'an hour later: not again');
    assert.equal(certificateEvents(new Map(), [cert(2)], log, T0 + 25 * 3600_000).length, 1, 'the next day: again');
    assert.deepEqual(certificateEvents(new Map(), [cert(ALERT_CERTIFICATE_DAYS + 1)], [], T0), []);
  });
});

describe('heartbeat parsers', () => {
  test('VmRSS from /proc/PID/status', () => {
    assert.equal(parseVmRss('Name:\tR\nVmPeak:\t  400000 kB\nVmRSS:\t   87340 kB\nRssAnon:\t 70000 kB\n'), 87340 * 1024);
    assert.equal(parseVmRss('Name:\tkthreadd\n'), null);
  });

  test('process uptime and CPU time from /proc/PID/stat and /proc/uptime, with spaces and parentheses in the command name', () => {
    // Fields 3 onwards; field 22 is the start time in ticks (100 per second).
    const fields = Array.from({ length: 50 }, (_, i) => (i === 19 ? '12345' : String(i + 3)));
    assert.equal(processUptime(`4242 (R (worker) x) ${fields.join(' ')}`, '1000.50 2000.00\n'), Math.round(1000.5 - 123.45));
    // Fields 14 and 15: user and system time in ticks.
    assert.equal(processCpuSeconds(`4242 (R (worker) x) ${fields.join(' ')}`), (14 + 15) / 100);
  });
});
