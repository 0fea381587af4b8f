import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { WebSocketServer } from 'ws';
import { compareVersions, HANDSHAKE_TIMEOUT_MS, HelloHead, PlumbError, PROTOCOL_VERSION } from '@plumb/shared';
import { AgentConnection } from '@plumb/controller/agent/client';
import { upgradeAvailable, versionSkew } from '@plumb/controller/agent/version';

/** A loopback port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => probe.once('listening', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The hello's protocol version: what a controller says to an agent of another version. */

describe('versions', () => {
  test('compareVersions orders as semver does', () => {
    const sorted = ['0.0.1', '0.1.0-rc.1', '0.1.0-rc.2', '0.1.0-rc.10', '0.1.0', '0.1.1', '0.10.0', '1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-beta', '1.0.0'];
    for (let i = 1; i < sorted.length; i++) {
      assert.ok(compareVersions(sorted[i - 1]!, sorted[i]!) < 0, `${sorted[i - 1]} < ${sorted[i]}`);
      assert.ok(compareVersions(sorted[i]!, sorted[i - 1]!) > 0, `${sorted[i]} > ${sorted[i - 1]}`);
    }
    assert.equal(compareVersions('0.1.0', '0.1.0'), 0);
  });

  test('upgradeAvailable names this plumb only when it is newer than the agent', () => {
    assert.equal(upgradeAvailable('0.0.9', '0.1.0'), '0.1.0');
    assert.equal(upgradeAvailable('0.1.0', '0.1.0'), null);
    assert.equal(upgradeAvailable('0.2.0', '0.1.0'), null);
  });
});

describe('the hello head', () => {
  test('an agent from before protocol versions reads as protocol 0; a newer hello with unknown fields still gives its head', () => {
    assert.deepEqual(HelloHead.parse({ type: 'hello', agentVersion: '0.0.9', dropletUuid: 'x' }), { type: 'hello', agentVersion: '0.0.9', protocol: 0, upgrade: null });
    const future = HelloHead.parse({ type: 'hello', agentVersion: '9.0.0', protocol: 7, somethingNew: { deep: true }, upgrade: null });
    assert.equal(future.protocol, 7);
  });

  test('same protocol: no complaint', () => {
    assert.equal(versionSkew({ type: 'hello', agentVersion: '0.1.0', protocol: PROTOCOL_VERSION, upgrade: null }, 'd1'), null);
  });

  test('an older agent is told to run plumb upgrade for that droplet', () => {
    const err = versionSkew({ type: 'hello', agentVersion: '0.1.0', protocol: 1, upgrade: null }, 'd1', '0.3.0', 2);
    assert.equal(err?.code, 'AGENT_OUTDATED');
    assert.equal(err?.message, 'the agent on d1 is version 0.1.0 (protocol 1), older than this plumb 0.3.0 (protocol 2)');
    assert.equal(err?.hint, 'run `plumb upgrade --droplet d1`');
  });

  test('an agent without plumb upgrade is told how to replace it', () => {
    const err = versionSkew({ type: 'hello', agentVersion: '0.0.9', protocol: 0, upgrade: null }, 'd1', '0.3.0', 2);
    assert.equal(err?.code, 'AGENT_OUTDATED');
    assert.match(err?.hint ?? '', /predates `plumb upgrade`: destroy the droplet \(`plumb destroy d1`\)/);
  });

  test('a newer agent asks for a newer plumb here (or --force)', () => {
    const err = versionSkew({ type: 'hello', agentVersion: '0.5.0', protocol: 3, upgrade: null }, 'd1', '0.3.0', 2);
    assert.equal(err?.code, 'AGENT_NEWER');
    assert.match(err?.hint ?? '', /upgrade plumb on this machine, or run `plumb upgrade --droplet d1 --force`/);
  });
});

describe('AgentConnection.open against an agent of another protocol', () => {
  let dir: string;
  let server: https.Server;
  let pin: string;
  let port: number;
  let hello: unknown;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-skew-'));
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${dir}/k`, '-out', `${dir}/c`, '-days', '1', '-subj', '/CN=fake-agent']);
    const cert = await readFile(`${dir}/c`, 'utf8');
    pin = createHash('sha256').update(new X509Certificate(cert).raw).digest('hex');
    server = https.createServer({ key: await readFile(`${dir}/k`, 'utf8'), cert });
    // A stand-in agent that says whatever hello the test sets, then nothing.
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.send(JSON.stringify(hello)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const open = (opts?: { allowSkew?: boolean }) => AgentConnection.open({ host: '127.0.0.1', port }, pin, 'token', { droplet: 'web-1', ...opts });

  test('an old agent (no protocol in its hello) gets the clear error, not a parse error', async () => {
    hello = { type: 'hello', agentVersion: '0.0.9', hostname: 'x' };
    await assert.rejects(open(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'AGENT_OUTDATED');
      assert.match(err.message, /^the agent on web-1 is version 0\.0\.9 \(protocol 0\), older than this plumb/);
      return true;
    });
  });

  test('a newer agent whose hello this plumb cannot parse gets AGENT_NEWER', async () => {
    hello = { type: 'hello', agentVersion: '9.0.0', protocol: PROTOCOL_VERSION + 1, renamedEverything: true };
    await assert.rejects(open(), { code: 'AGENT_NEWER' });
  });

  test('with allowSkew (upgrade, status) the head is there, the rest is not claimed', async () => {
    hello = { type: 'hello', agentVersion: '9.0.0', protocol: PROTOCOL_VERSION + 1 };
    const connection = await open({ allowSkew: true });
    assert.equal(connection.head.agentVersion, '9.0.0');
    assert.throws(() => connection.hello, { code: 'AGENT_PROTOCOL' });
    connection.close();
  });

  test('the same protocol with a hello that does not parse is a protocol error', async () => {
    hello = { type: 'hello', agentVersion: '0.1.0', protocol: PROTOCOL_VERSION };
    await assert.rejects(open(), { code: 'AGENT_PROTOCOL' });
  });

  // connectAgent hands over the token while it is still being made (reading the key, signing), so that the handshake goes meanwhile.
  const keyMissing = (afterMs: number) => new Promise<string>((_, reject) => setTimeout(() => reject(new PlumbError('CONTROLLER_KEY_MISSING', 'the controller key is missing')), afterMs));

  test('a token that fails after the handshake is the error told; the socket is closed and nothing was sent on it', async () => {
    let upgrades = 0;
    const countUpgrade = () => upgrades++;
    server.on('upgrade', countUpgrade);
    const closed = new Promise<void>((resolve) => server.once('secureConnection', (socket) => socket.once('close', () => resolve())));
    try {
      await assert.rejects(AgentConnection.open({ host: '127.0.0.1', port }, pin, keyMissing(300)), { code: 'CONTROLLER_KEY_MISSING' });
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the socket the handshake opened was left open')), 5_000).unref())]);
      assert.equal(upgrades, 0);
    } finally {
      server.off('upgrade', countUpgrade);
    }
  });

  test('a token that fails is told at once, not after the handshake timeout of an agent that never answers TLS; its socket is closed', async () => {
    const silent = net.createServer();
    const sockets: net.Socket[] = [];
    const closed = new Promise<void>((resolve) => silent.once('connection', (socket) => { sockets.push(socket); socket.resume().once('close', () => resolve()); }));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const started = Date.now();
      await assert.rejects(AgentConnection.open({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port }, pin, keyMissing(200)), { code: 'CONTROLLER_KEY_MISSING' });
      assert.ok(Date.now() - started < HANDSHAKE_TIMEOUT_MS / 4, `told after ${Date.now() - started} ms`);
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the abandoned socket was left open')), 5_000).unref())]);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('an agent that closes the socket after the handshake, while the token is still being signed, is told as unreachable (not a wait that never ends)', async () => {
    // An agent shutting down (a restart, an upgrade) can finish a handshake, then close.
    const closing = https.createServer({ key: await readFile(`${dir}/k`, 'utf8'), cert: await readFile(`${dir}/c`, 'utf8') });
    closing.on('secureConnection', (socket) => socket.destroy());
    await new Promise<void>((resolve) => closing.listen(0, '127.0.0.1', resolve));
    const slowToken = new Promise<string>((resolve) => setTimeout(() => resolve('token'), 300));
    try {
      const opened = AgentConnection.open({ host: '127.0.0.1', port: (closing.address() as AddressInfo).port }, pin, slowToken);
      const stuck = new Promise((_, reject) => setTimeout(() => reject(new Error('still waiting 3 s later')), 3_000).unref());
      await assert.rejects(Promise.race([opened, stuck]), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'AGENT_UNREACHABLE', err.message);
        assert.match(err.message, /closed the connection/);
        return true;
      });
    } finally {
      await new Promise((resolve) => closing.close(resolve));
    }
  });

  test('a token that fails is told before an agent that cannot be reached', async () => {
    await assert.rejects(AgentConnection.open({ host: '127.0.0.1', port: await closedPort() }, pin, keyMissing(300)), { code: 'CONTROLLER_KEY_MISSING' });
  });
});
