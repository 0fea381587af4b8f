import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StatusResult } from '@plumb/shared';
import { printStatus } from '@plumb/controller/output/print-status';

/** `plumb status` as text, from a status the agent could send. */

const heartbeat: StatusResult['heartbeat'] = { time: '2026-11-28T06:00:00.000Z', lastEventId: 0, load: [0.1, 0.2, 0.3], memory: { totalBytes: 4 * 1024 ** 3, availableBytes: 2 * 1024 ** 3 }, disk: { totalBytes: 1e11, freeBytes: 5e10 }, workers: [], certificates: [] };

type Api = StatusResult['apis'][number];

/** A status; `policy` null and `why` null: an agent from before the spare's auto policy. */
function statusWith(draining: Api['draining'], secrets: string[] = [], spare: Api['spare'] = null, policy: Api['sparePolicy'] = null, why: Api['spareWhy'] = null): StatusResult {
  return {
    apis: [{ name: 'sum', path: '/sum', release: '20261128T060000Z-abcd', state: 'active', workers: [{ port: 9001, state: 'active', pid: 42, since: null, restarts: 0 }], draining, forwarded: false, deployedAt: '2026-11-28T06:00:00.000Z', secrets, digest: null, group: null, spare, sparePolicy: policy, spareWhy: why }],
    forward: null,
    hello: { type: 'hello', agentVersion: '0.1.0', protocol: 1, upgrade: null, dropletUuid: '00000000-0000-4000-8000-000000000000', hostname: 'd', enrolled: true, uptimeSeconds: 1, cloudInit: { status: 'done', stage: null, errors: [] }, swap: null, features: [] },
    load: heartbeat.load,
    memory: heartbeat.memory,
    disk: heartbeat.disk,
    heartbeat,
    events: [],
    lastEventId: 0,
  };
}

test('status: the WORKERS column counts the live workers, and the previous ones still draining after a switch', () => {
  const row = (s: StatusResult) => printStatus([{ droplet: 'd', address: '10.0.0.2', status: s, seenEventId: null }]).split('\n').find((l) => l.startsWith('  sum')) ?? '';
  assert.match(row(statusWith([{ port: 9000, release: '20261128T055900Z-dcba', until: '2026-11-28T06:00:30.000Z' }])), /\s1 \(\+1 draining\)\s/);
  assert.match(row(statusWith([])), /20261128T060000Z-abcd\s+1\s/);
});

test('status: the SECRETS column names an API\'s secrets (the agent never sends their values), and shows - when it has none', () => {
  const text = (s: StatusResult) => printStatus([{ droplet: 'd', address: '10.0.0.2', status: s, seenEventId: null }]).split('\n');
  const header = (lines: string[]) => lines.find((l) => l.startsWith('  API')) ?? '';
  const row = (lines: string[]) => lines.find((l) => l.startsWith('  sum')) ?? '';
  const withSecrets = text(statusWith([], ['DB_PASSWORD', 'TOKEN']));
  assert.match(header(withSecrets), /\sSECRETS$/);
  assert.match(row(withSecrets), /\sDB_PASSWORD,TOKEN$/);
  assert.match(row(text(statusWith([]))), /\s-$/);
});

test("status: an API's warm spare gets a line under the table: its port, whether the next deploy can take it, its memory; none without a spare", () => {
  const lines = (s: StatusResult) => printStatus([{ droplet: 'd', address: '10.0.0.2', status: s, seenEventId: null }]).split('\n');
  const spare = { port: 9002, state: 'waiting', pid: 43, restarts: 0, restartsWhileWaiting: 0, rssBytes: 85 * 1024 ** 2 };
  assert.ok(lines(statusWith([], [], spare)).includes('  sum: warm spare on port 9002, waiting, 85 MiB'));
  assert.ok(lines(statusWith([], [], { ...spare, restarts: 1, restartsWhileWaiting: 1 })).includes('  sum: warm spare on port 9002, waiting (crashed while waiting: the next deploy starts cold), 85 MiB'));
  assert.ok(lines(statusWith([], [], { ...spare, state: 'restarting', pid: null, restarts: 1, restartsWhileWaiting: 1, rssBytes: null })).includes('  sum: warm spare on port 9002, restarting (crashed while waiting: the next deploy starts cold)'));
  assert.ok(!lines(statusWith([])).some((l) => l.includes('spare')));
});

test("status: an API's spare policy is shown, and without a spare why there is none (auto's reason, --no-spare)", () => {
  const lines = (s: StatusResult) => printStatus([{ droplet: 'd', address: '10.0.0.2', status: s, seenEventId: null }]).split('\n');
  const spare = { port: 9002, state: 'waiting', pid: 43, restarts: 0, restartsWhileWaiting: 0, rssBytes: 85 * 1024 ** 2 };
  assert.ok(lines(statusWith([], [], spare, 'auto')).includes('  sum: warm spare (auto) on port 9002, waiting, 85 MiB'));
  assert.ok(lines(statusWith([], [], spare, 'always')).includes('  sum: warm spare (--spare) on port 9002, waiting, 85 MiB'));
  assert.ok(lines(statusWith([], [], null, 'auto', 'auto: 180 MiB available, a spare takes ~85 MiB, 256 MiB kept free')).includes('  sum: no warm spare (auto: 180 MiB available, a spare takes ~85 MiB, 256 MiB kept free)'));
  assert.ok(lines(statusWith([], [], null, 'never', '--no-spare')).includes('  sum: no warm spare (--no-spare)'));
  assert.ok(lines(statusWith([], [], null, 'auto')).includes('  sum: no warm spare yet (auto: decided after each deploy and agent start)'));
  assert.ok(lines(statusWith([], [], null, 'always')).includes('  sum: no warm spare yet (--spare: one starts after each deploy and agent start)'));
});

test('status: a spare that crashed is said to have crashed while loading or while waiting, as it did; "crashed" alone from an agent that does not say', () => {
  const line = (over: Partial<NonNullable<StatusResult['apis'][number]['spare']>>) =>
    printStatus([{ droplet: 'd', address: '10.0.0.2', status: statusWith([], [], { port: 9002, state: 'starting', pid: 43, restarts: 0, restartsWhileWaiting: 0, rssBytes: null, ...over }), seenEventId: null }])
      .split('\n')
      .find((l) => l.includes('warm spare'));
  assert.equal(line({ restarts: 1, restartsWhileWaiting: 0 }), '  sum: warm spare on port 9002, starting (crashed while loading: the next deploy starts cold)');
  assert.equal(line({ state: 'failed', pid: null, restarts: 3, restartsWhileWaiting: 0 }), '  sum: warm spare on port 9002, failed (crashed 3 times while loading: the next deploy starts cold)');
  assert.equal(line({ state: 'waiting', restarts: 3, restartsWhileWaiting: 3 }), '  sum: warm spare on port 9002, waiting (crashed 3 times while waiting: the next deploy starts cold)');
  assert.equal(line({ restarts: 3, restartsWhileWaiting: 1 }), '  sum: warm spare on port 9002, starting (crashed 3 times, 2 while loading and 1 while waiting: the next deploy starts cold)');
  assert.equal(line({ restarts: 2, restartsWhileWaiting: null }), '  sum: warm spare on port 9002, starting (crashed 2 times: the next deploy starts cold)');
});

test('status: an event kind this plumb does not know (a newer agent recorded it) parses and shows under its own name, marked, with its detail', () => {
  const event = (id: number, kind: string) => ({ id, time: '2026-11-29T05:00:00.000Z', kind, api: 'sum', port: null, by: null, detail: `detail ${id}` });
  const wire = JSON.parse(JSON.stringify({ ...statusWith([]), events: [event(1, 'deploy'), event(2, 'spare-warmed-twice'), event(3, 'odd\u001b[2Jkind')], lastEventId: 3 })) as unknown;
  const text = printStatus([{ droplet: 'd', address: '10.0.0.2', status: StatusResult.parse(wire), seenEventId: null }]).split('\n');
  const line = (id: number) => text.find((l) => l.endsWith(`detail ${id}`)) ?? '';
  assert.match(line(1), /\sdeploy\s+sum\s+detail 1$/);
  assert.match(line(2), /\sspare-warmed-twice \(new kind\)\s+sum\s+detail 2$/);
  assert.ok(!line(3).includes('\u001b'), line(3));
  assert.match(line(3), /odd.*\(new kind\)/);
});
