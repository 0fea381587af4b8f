import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { EVENTS_KEPT, WATCH_MAX_BUFFERED_BYTES, WebhookPayload, WEBHOOK_ATTEMPTS, WEBHOOK_QUEUE_MAX, type AgentEvent, type Heartbeat } from '@plumb/shared';
import { appendBounded, EventLog } from '@plumb/agent/monitor/events';
import { certificates } from '@plumb/agent/monitor/heartbeat';
import { watch } from '@plumb/agent/monitor/watch';
import { Alerter, post } from '@plumb/agent/monitor/webhook';
import { StateStore } from '@plumb/agent/state';

/** The agent's event ring, its file, its watchers and its webhook (packages/agent/src/monitor). */

const dir = () => mkdtemp(path.join(tmpdir(), 'plumb-events-'));
const droplet = { uuid: '6f1c1a52-7f3e-4a53-9a35-2b1f7e0c9d11', hostname: 'health' };

describe('event ring', () => {
  test('keeps the newest, in order', () => {
    let ring: number[] = [];
    for (let i = 1; i <= 7; i++) ring = appendBounded(ring, i, 5);
    assert.deepEqual(ring, [3, 4, 5, 6, 7]);
  });

  test('is bounded, saved atomically, and read back by the next agent with ids going on', async () => {
    const stateDir = await dir();
    const first = new EventLog(5);
    await first.open(stateDir);
    for (let i = 1; i <= 8; i++) first.record({ kind: 'deploy', api: 'sum', detail: `release ${i}` });
    await first.flush();
    const saved = JSON.parse(await readFile(path.join(stateDir, 'events.json'), 'utf8')) as { events: AgentEvent[] };
    assert.deepEqual(saved.events.map((e) => e.id), [4, 5, 6, 7, 8]);

    const second = new EventLog(5);
    await second.open(stateDir);
    assert.deepEqual(second.latest(10).map((e) => e.detail), ['release 4', 'release 5', 'release 6', 'release 7', 'release 8']);
    assert.equal(second.record({ kind: 'remove', api: 'sum', detail: 'gone' }).id, 9);
    assert.deepEqual(second.after(7).map((e) => e.id), [8, 9]);
    assert.deepEqual(second.after(null, 2).map((e) => e.id), [8, 9]);
  });

  test(`the agent's ring keeps the latest ${EVENTS_KEPT} events, in its file too`, async () => {
    const stateDir = await dir();
    const log = new EventLog();
    await log.open(stateDir);
    for (let i = 1; i <= EVENTS_KEPT + 1; i++) log.record({ kind: 'deploy', api: 'sum', detail: String(i) });
    await log.flush();
    const saved = JSON.parse(await readFile(path.join(stateDir, 'events.json'), 'utf8')) as { events: AgentEvent[] };
    assert.deepEqual([saved.events.length, saved.events[0]?.id, saved.events.at(-1)?.id], [EVENTS_KEPT, 2, EVENTS_KEPT + 1]);
  });

  test('events recorded before the file is read follow the saved ones', async () => {
    const stateDir = await dir();
    const earlier = new EventLog();
    await earlier.open(stateDir);
    earlier.record({ kind: 'deploy', api: 'a', detail: 'saved' });
    await earlier.flush();
    const log = new EventLog();
    log.record({ kind: 'down', api: 'a', port: 9000, detail: 'early' });
    await log.open(stateDir);
    assert.deepEqual(log.latest(5).map((e) => [e.id, e.detail]), [[1, 'saved'], [2, 'early']]);
  });

  test('a damaged file is set aside and the agent starts a new ring', async () => {
    const stateDir = await dir();
    await writeFile(path.join(stateDir, 'events.json'), '{"version":1,"events":[{"id":"x"}');
    const log = new EventLog();
    await log.open(stateDir);
    assert.equal(log.lastId, 0);
    assert.match(await readFile(path.join(stateDir, 'events.json.damaged'), 'utf8'), /"x"/);
  });

  test('listeners hear each event until they unsubscribe; a failing listener harms no one', async () => {
    const log = new EventLog();
    const heard: number[] = [];
    log.subscribe(() => {
      throw new Error('boom');
    });
    const off = log.subscribe((e) => heard.push(e.id));
    log.record({ kind: 'up', api: 'a', port: 9000, detail: '1' });
    off();
    log.record({ kind: 'up', api: 'a', port: 9000, detail: '2' });
    assert.deepEqual(heard, [1]);
  });
});

describe('watch', () => {
  async function watching(log: EventLog, since: number | null, buffered = () => 0) {
    const state = await StateStore.open(await dir());
    const sent: Array<{ type: 'event'; event: AgentEvent } | { type: 'heartbeat'; heartbeat: Heartbeat }> = [];
    const controller = new AbortController();
    const result = watch(since, { send: (m) => sent.push(m), buffered, signal: controller.signal }, state, log);
    return { sent, result, cancel: () => controller.abort() };
  }

  test('replays the events after the given id, then sends new ones as they are recorded, and a heartbeat', async () => {
    const log = new EventLog();
    for (let i = 0; i < 3; i++) log.record({ kind: 'deploy', api: 'a', detail: String(i) });
    const w = await watching(log, 1);
    log.record({ kind: 'down', api: 'a', port: 9000, detail: 'live' });
    for (let i = 0; i < 100 && !w.sent.some((m) => m.type === 'heartbeat'); i++) await new Promise((r) => setTimeout(r, 10));
    w.cancel();
    assert.deepEqual(await w.result, { events: 3 });
    assert.deepEqual(w.sent.filter((m) => m.type === 'event').map((m) => m.event.id), [2, 3, 4]);
    const beat = w.sent.find((m) => m.type === 'heartbeat');
    assert.ok(beat && beat.type === 'heartbeat' && beat.heartbeat.lastEventId >= 3 && beat.heartbeat.load.length === 3);
  });

  test(`a controller that stops reading is sent events while ${WATCH_MAX_BUFFERED_BYTES} bytes wait unsent, and cut off past that`, async () => {
    const log = new EventLog();
    let unsent = WATCH_MAX_BUFFERED_BYTES;
    const w = await watching(log, null, () => unsent);
    log.record({ kind: 'down', api: 'a', port: 9000, detail: 'x' });
    assert.deepEqual(w.sent.filter((m) => m.type === 'event').map((m) => m.event.id), [1], 'at the limit, the event is sent');
    unsent++;
    log.record({ kind: 'down', api: 'a', port: 9000, detail: 'y' });
    const sent = w.sent.filter((m) => m.type === 'event').length;
    // Ends a watch that was not cut off, so a broken limit fails here rather than waiting forever.
    w.cancel();
    assert.equal(sent, 1, 'the event past it is not sent');
    await assert.rejects(w.result, { code: 'WATCH_TOO_SLOW', message: 'the controller did not keep up with the events; watch again' });
  });
});

describe('webhook', () => {
  const servers: http.Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  /**
   * A receiver on loopback answering each POST with the next status of `answers` (then 200); the
   * first answer waits for `firstAnswer` when given (a receiver that hangs for a while).
   */
  async function receiver(answers: number[] = [], firstAnswer?: Promise<void>) {
    const got: WebhookPayload[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => {
        got.push(WebhookPayload.parse(JSON.parse(body)));
        const wait = got.length === 1 && firstAnswer ? firstAnswer : Promise.resolve();
        void wait.then(() => res.writeHead(answers.shift() ?? 200).end());
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    return { url: `http://127.0.0.1:${port}/hook`, got };
  }

  const until = async (check: () => boolean, ms = 15_000) => {
    const deadline = Date.now() + ms;
    while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  };

  test('a down event is POSTed as JSON; deploys are not alerts; nothing goes out without a URL', async () => {
    const { url, got } = await receiver();
    let webhook: string | null = null;
    const log = new EventLog();
    const alerter = new Alerter(log, () => webhook, droplet);
    log.subscribe((e) => alerter.notify(e));
    log.record({ kind: 'down', api: 'sum', port: 9000, detail: 'before the URL was set' });
    webhook = url;
    log.record({ kind: 'deploy', api: 'sum', detail: 'release x' });
    log.record({ kind: 'down', api: 'sum', port: 9000, detail: 'the R process exited; systemd restarted it' });
    // Alerts go out in order, so once this later one has arrived, anything sent before it has too.
    log.record({ kind: 'up', api: 'sum', port: 9000, detail: 'answers again' });
    await until(() => got.length >= 2);
    alerter.stop();
    assert.deepEqual(got.map((p) => p.alert), ['down', 'up']);
    assert.equal(got[0]?.event?.kind, 'down');
    assert.match(got[0]?.text ?? '', /^\[health\] sum \(worker 9000\) is down: the R process exited/);
  });

  test(`a receiver that always fails is tried ${WEBHOOK_ATTEMPTS} times per alert, then the next alert goes out`, async () => {
    // Never a 2xx: only the attempt limit moves the queue on, so the POST after the first alert's
    // last try must be the second alert (with no limit it would be the first one again, forever).
    const { url, got } = await receiver(Array.from({ length: 2 * WEBHOOK_ATTEMPTS }, () => 500));
    const log = new EventLog();
    const alerter = new Alerter(log, () => url, droplet);
    log.subscribe((e) => alerter.notify(e));
    log.record({ kind: 'down', api: 'first', port: 9000, detail: 'gone' });
    log.record({ kind: 'down', api: 'second', port: 9001, detail: 'gone too' });
    await until(() => got.length > WEBHOOK_ATTEMPTS, 60_000);
    alerter.stop();
    assert.deepEqual(got.slice(0, WEBHOOK_ATTEMPTS + 1).map((p) => p.event?.api), [...Array.from({ length: WEBHOOK_ATTEMPTS }, () => 'first'), 'second']);
  });

  test(`alerts waiting behind a hung receiver are kept up to ${WEBHOOK_QUEUE_MAX}, the oldest dropped first; the rest go out in order`, async () => {
    let answer = () => {};
    const { url, got } = await receiver([], new Promise((r) => (answer = r)));
    const log = new EventLog();
    const alerter = new Alerter(log, () => url, droplet);
    log.subscribe((e) => alerter.notify(e));
    log.record({ kind: 'down', api: 'sum', port: 9000, detail: 'sent' });
    await until(() => got.length === 1);
    // The receiver holds the first POST (well inside its timeout) while these queue up.
    const queued = WEBHOOK_QUEUE_MAX + 5;
    for (let i = 1; i <= queued; i++) log.record({ kind: 'down', api: 'sum', port: 9000, detail: String(i) });
    answer();
    log.record({ kind: 'up', api: 'sum', port: 9000, detail: 'last' });
    await until(() => got.at(-1)?.event?.detail === 'last', 60_000);
    alerter.stop();
    const kept = Array.from({ length: WEBHOOK_QUEUE_MAX - 1 }, (_, i) => String(queued - WEBHOOK_QUEUE_MAX + 2 + i));
    assert.deepEqual(got.map((p) => p.event?.detail), ['sent', ...kept, 'last']);
  });

  test('a receiver that is not there: a clear answer, no exception', async () => {
    const { url } = await receiver();
    servers.pop()?.close();
    await new Promise((r) => setTimeout(r, 50));
    const outcome = await post(url, { source: 'plumb-agent', alert: 'test', droplet, text: 't', event: null });
    assert.deepEqual(outcome, { ok: false, detail: 'ECONNREFUSED' });
  });
});

test('certificates: name, domains and days left of each certbot lineage', async () => {
  const live = await dir();
  const lineage = path.join(live, 'api.example.com');
  await execa('mkdir', ['-p', lineage]);
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', '/CN=api.example.com', '-addext', 'subjectAltName=DNS:api.example.com,DNS:www.example.com', '-keyout', path.join(lineage, 'privkey.pem'), '-out', path.join(lineage, 'cert.pem')]);
  await writeFile(path.join(live, 'README'), 'certbot says hello');
  const [cert, ...rest] = await certificates(live);
  assert.equal(rest.length, 0);
  assert.equal(cert?.name, 'api.example.com');
  assert.deepEqual(cert?.domains, ['api.example.com', 'www.example.com']);
  assert.ok(cert && cert.daysLeft > 29 && cert.daysLeft <= 30, String(cert?.daysLeft));
  assert.deepEqual(await certificates(path.join(live, 'nowhere')), []);
});
