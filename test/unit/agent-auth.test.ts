import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { once } from 'node:events';
import * as z from 'zod';
import { AgentEvent, FIRST_EVENT_KINDS, STATUS_EVENTS_MAX, StatusResult, type AgentConfig } from '@plumb/shared';
import { AgentConnection, agentAnswers, enrol, type AgentAddress } from '@plumb/controller/agent/client';
import { loadOrCreateSigningKey, type SigningKey } from '@plumb/controller/local/keys';
import { tokenFor } from '@plumb/controller/agent/tokens';
import { printStatus } from '@plumb/controller/output/print-status';
import { agentAuthCases, type AuthTarget } from '../cases/agent-auth.cases.js';
import { agentFrameCases } from '../cases/agent-frames.cases.js';
import { agentFuzzCases } from '../cases/agent-fuzz.cases.js';
import { agentSocket } from '../cases/agent-socket.js';
import { agentLimitCases } from '../cases/agent-limits.cases.js';

/** The agent's trust rules against a real agent process on loopback (its TLS, its config, its state). */

const AGENT_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../packages/agent/dist/main.js');

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** A TCP relay to `target` that resets its first connection as soon as the client speaks. */
async function cutFirstConnection(target: AgentAddress): Promise<{ address: AgentAddress; connections: () => number; close: () => void }> {
  let connections = 0;
  const server = net.createServer((client) => {
    connections++;
    if (connections === 1) {
      client.once('data', () => client.resetAndDestroy());
      return;
    }
    const upstream = net.connect(target.port, target.host);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { address: { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, connections: () => connections, close: () => server.close() };
}

/** Every file under `root` with the sha256 of its content, one a line: what "nothing changed" compares. */
async function digestTree(root: string): Promise<string> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const lines = await Promise.all(
    entries.map(async (e) => {
      const p = path.join(e.parentPath, e.name);
      return `${path.relative(root, p)} ${e.isFile() ? createHash('sha256').update(await readFile(p)).digest('hex') : e.isDirectory() ? 'dir' : 'other'}`;
    }),
  );
  return lines.sort().join('\n');
}

/** Events on the local agent before it starts: past STATUS_EVENTS_MAX, within EVENTS_KEPT. */
const SEEDED_EVENTS = STATUS_EVENTS_MAX + 50;

describe('a local plumb-agent', () => {
  let dir: string;
  let agent: ChildProcess;
  let key: SigningKey;
  let address: AgentAddress;
  const dropletUuid = randomUUID();
  const secret = randomBytes(16).toString('hex');
  let pin = '';

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-agent-'));
    key = await loadOrCreateSigningKey(path.join(dir, 'controller'));
    address = { host: '127.0.0.1', port: await freePort() };
    const config: AgentConfig = { dropletUuid, dropletName: 'local', port: address.port, host: '127.0.0.1', controllerKeys: [key.publicKey], enrolmentSecret: secret };
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
    // A droplet that has been busy: more events kept than one status carries.
    await mkdir(path.join(dir, 'state'), { recursive: true, mode: 0o700 });
    const events = Array.from({ length: SEEDED_EVENTS }, (_, i) => ({ id: i + 1, time: new Date(Date.now() - 1000 * (SEEDED_EVENTS - i)).toISOString(), kind: 'deploy', api: 'sum', port: null, by: null, detail: `release ${i + 1}` }));
    // The newest two of kinds that came after protocol 1's first version.
    Object.assign(events.at(-2)!, { kind: 'routing-restored', api: null, detail: 'put back' });
    Object.assign(events.at(-1)!, { kind: 'spare-crashing', detail: 'crashed 3 times while loading' });
    await writeFile(path.join(dir, 'state', 'events.json'), JSON.stringify({ version: 1, events }), { mode: 0o600 });
    agent = spawn(process.execPath, [AGENT_MAIN], {
      env: { ...process.env, PLUMB_AGENT_CONFIG: path.join(dir, 'config.json'), PLUMB_AGENT_STATE_DIR: path.join(dir, 'state') },
      stdio: 'ignore',
    });
    for (let i = 0; i < 100 && !(await agentAnswers(address)); i++) await new Promise((r) => setTimeout(r, 100));
  });

  after(async () => {
    agent?.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });

  test('before enrolment the agent opens no socket, even for a valid token (403)', async () => {
    const cert = await readFile(path.join(dir, 'state/tls/agent.crt'), 'utf8');
    const fingerprint = createHash('sha256').update(new X509Certificate(cert).raw).digest('hex');
    await assert.rejects(AgentConnection.open(address, fingerprint, await tokenFor(key, dropletUuid)), /HTTP 403/);
  });

  const configOnDisk = async () => JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as AgentConfig;

  test('enrolment: the agent proves the secret over its own certificate, and keeps the secret until a socket opens; a connection cut on the way is tried again', async () => {
    const proxy = await cutFirstConnection(address);
    try {
      pin = await enrol(proxy.address, () => tokenFor(key, dropletUuid), secret);
      assert.equal(proxy.connections(), 2);
    } finally {
      proxy.close();
    }
    assert.match(pin, /^[0-9a-f]{64}$/);
    assert.equal((await configOnDisk()).enrolmentSecret, secret);
  });

  test('enrolment: an answer lost on the way is asked for again and given again, the same', async () => {
    assert.equal(await enrol(address, () => tokenFor(key, dropletUuid), secret), pin);
  });

  test('enrolment: the first authenticated socket burns the secret; enrolment is refused from then on', async () => {
    const connection = await AgentConnection.open(address, pin, await tokenFor(key, dropletUuid));
    connection.close();
    assert.equal((await configOnDisk()).enrolmentSecret, undefined);
    await assert.rejects(enrol(address, () => tokenFor(key, dropletUuid), secret), /already enrolled/);
  });

  test('enrolment: a controller holding the wrong secret rejects the proof', async () => {
    const other = randomUUID();
    const otherDir = await mkdtemp(path.join(os.tmpdir(), 'plumb-agent-'));
    const otherAddress = { host: '127.0.0.1', port: await freePort() };
    const config: AgentConfig = { dropletUuid: other, dropletName: 'other', port: otherAddress.port, host: '127.0.0.1', controllerKeys: [key.publicKey], enrolmentSecret: randomBytes(16).toString('hex') };
    await writeFile(path.join(otherDir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
    const child = spawn(process.execPath, [AGENT_MAIN], { env: { ...process.env, PLUMB_AGENT_CONFIG: path.join(otherDir, 'config.json'), PLUMB_AGENT_STATE_DIR: path.join(otherDir, 'state') }, stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !(await agentAnswers(otherAddress)); i++) await new Promise((r) => setTimeout(r, 100));
      await assert.rejects(enrol(otherAddress, () => tokenFor(key, other), secret), /could not prove/);
    } finally {
      child.kill('SIGTERM');
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  agentAuthCases((): AuthTarget => ({ address, dropletUuid, pin, key }));
  agentFrameCases((): AuthTarget => ({ address, dropletUuid, pin, key }));
  agentLimitCases((): AuthTarget => ({ address, dropletUuid, pin, key }));
  agentFuzzCases((): AuthTarget => ({ address, dropletUuid, pin, key }), { runs: 60, snapshot: () => digestTree(path.join(dir, 'state')) });

  test(`status carries the latest ${STATUS_EVENTS_MAX} events of the ${SEEDED_EVENTS} kept, and plumb status says how many it did not show`, async () => {
    const connection = await AgentConnection.open(address, pin, await tokenFor(key, dropletUuid));
    const status = StatusResult.parse(await connection.request({ type: 'status' }).finally(() => connection.close()));
    assert.equal(status.events.length, STATUS_EVENTS_MAX);
    // The newest ones, one after another (the tests before this one added some of their own).
    assert.deepEqual(status.events.map((e) => e.id), Array.from({ length: STATUS_EVENTS_MAX }, (_, i) => status.lastEventId - STATUS_EVENTS_MAX + 1 + i));
    const seen = 10;
    const text = printStatus([{ droplet: 'local', address: address.host, status, seenEventId: seen }]);
    const fresh = status.lastEventId - seen;
    assert.match(text, new RegExp(`events since the last look \\(${fresh}\\):\n    … ${fresh - 20} earlier \\(plumb status --json lists the last ${STATUS_EVENTS_MAX}\\)`));
  });

  test("events of kinds a controller from before any-event-kind may not know reach it as health-failed, named in the detail: its status and watch parse; this plumb's are as recorded", async () => {
    // Such a controller parsed events with the kinds of its own version: at least these, nothing else.
    const StrictStatus = StatusResult.extend({ events: z.array(AgentEvent.extend({ kind: z.enum(FIRST_EVENT_KINDS) })) });
    const { ws } = await agentSocket({ address, dropletUuid, pin, key });
    const messages: Array<{ type: string; id?: number; result?: unknown; event?: AgentEvent }> = [];
    ws.on('message', (data) => messages.push(JSON.parse(String(data))));
    await once(ws, 'open');
    const until = async (done: () => boolean) => {
      for (let i = 0; i < 100 && !done(); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(done(), JSON.stringify(messages));
    };
    try {
      ws.send(JSON.stringify({ id: 1, type: 'status' }));
      await until(() => messages.some((m) => m.id === 1));
      const parsed = StrictStatus.safeParse(messages.find((m) => m.id === 1)?.result);
      assert.ok(parsed.success, parsed.error?.message);
      const newest = (status: { events: AgentEvent[] }) => status.events.filter((e) => e.id > SEEDED_EVENTS - 2 && e.id <= SEEDED_EVENTS).map((e) => [e.kind, e.detail]);
      const asStrict = [['health-failed', 'routing-restored: put back'], ['health-failed', 'spare-crashing: crashed 3 times while loading']];
      assert.deepEqual(newest(parsed.data), asStrict);
      ws.send(JSON.stringify({ id: 2, type: 'watch', sinceEventId: SEEDED_EVENTS - 2 }));
      await until(() => messages.filter((m) => m.id === 2 && m.type === 'event').length >= 2);
      const watched = messages.filter((m) => m.id === 2 && m.type === 'event').map((m) => m.event!);
      assert.deepEqual(newest({ events: watched }), asStrict);
    } finally {
      ws.close();
    }
    const connection = await AgentConnection.open(address, pin, await tokenFor(key, dropletUuid));
    const status = StatusResult.parse(await connection.request({ type: 'status' }).finally(() => connection.close()));
    assert.deepEqual(status.events.filter((e) => e.id > SEEDED_EVENTS - 2 && e.id <= SEEDED_EVENTS).map((e) => e.kind), ['routing-restored', 'spare-crashing']);
  });

  // Last: it may leave only the second key trusted.
  test('keys: two controllers revoking each other at once leave one key trusted, and the other is told why', async () => {
    const second = await loadOrCreateSigningKey(path.join(dir, 'controller-2'));
    const first = await AgentConnection.open(address, pin, await tokenFor(key, dropletUuid));
    await first.request({ type: 'keys-add', key: { ...second.publicKey, name: 'second' } });
    const other = await AgentConnection.open(address, pin, await tokenFor(second, dropletUuid));
    const outcomes = await Promise.allSettled([first.request({ type: 'keys-revoke', key: second.kid }), other.request({ type: 'keys-revoke', key: key.kid })]);
    first.close();
    other.close();
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1, JSON.stringify(outcomes));
    const refused = outcomes.find((o) => o.status === 'rejected');
    assert.equal((refused?.reason as { code?: string }).code, 'KEY_REVOKED', String(refused?.reason));
    assert.equal((await configOnDisk()).controllerKeys.length, 1);
  });
});
