import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import WebSocket from 'ws';
import { AGENT_MAX_CONNECTIONS_PER_PEER, AGENT_MAX_PENDING_REQUESTS, AGENT_MAX_TCP_TOTAL, CONTROLLER_KEYS_MAX, AGENT_MAX_TCP_PER_PEER, HANDSHAKE_TIMEOUT_MS, WS_MAX_PAYLOAD_BYTES } from '@plumb/shared';
import type { AuthTarget } from './agent-auth.cases.js';
import { agentStillServes } from './agent-frames.cases.js';
import { agentSocket, upgradeStatus } from './agent-socket.js';

/**
 * What one address can hold on the agent before and after authenticating, run against an
 * enrolled agent it is the only client of: each cap is crossed and the agent then serves again.
 */

/** Opens an authenticated WebSocket; resolves with the HTTP status (101 = open) and the socket. */
async function open(t: AuthTarget): Promise<{ status: number; ws?: WebSocket }> {
  const { ws } = await agentSocket(t);
  const status = await upgradeStatus(ws);
  return status === 101 ? { status, ws } : { status };
}

const closed = (socket: net.Socket) => new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));

/** `count` TCP connections to the agent that never start TLS, from the loopback address `from` when given. */
const silentConnections = (t: AuthTarget, count: number, from?: string) =>
  Promise.all(
    Array.from({ length: count }, () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ port: t.address.port, host: t.address.host, ...(from ? { localAddress: from } : {}) }, () => resolve(s));
      s.on('error', () => {});
      s.once('error', reject);
    })),
  );

/**
 * Which sockets the agent dropped: those closed before half its handshake timeout, the only other
 * reason it closes a silent connection. The rest are left open for the caller.
 */
async function droppedAtOnce(sockets: net.Socket[]): Promise<boolean[]> {
  const gone = sockets.map(() => false);
  sockets.forEach((s, i) => void closed(s).then(() => (gone[i] = true)));
  await new Promise((r) => setTimeout(r, HANDSHAKE_TIMEOUT_MS / 2));
  return [...gone];
}

/** An open authenticated socket after the agent's hello, with the answers (result or error) it gets, by request id. */
async function session(t: AuthTarget) {
  const { status, ws } = await open(t);
  assert.equal(status, 101);
  const socket = ws!;
  const answers = new Map<number, { type: string; error?: { code: string; message: string } }>();
  let closed: number | null = null;
  socket.on('close', (code) => (closed = code));
  socket.on('message', (data, binary) => {
    if (binary) return;
    const m = JSON.parse(String(data)) as { type: string; id?: number; error?: { code: string; message: string } };
    if ((m.type === 'result' || m.type === 'error') && m.id !== undefined) answers.set(m.id, m);
  });
  await once(socket, 'message');
  return {
    ws: socket,
    closed: () => closed,
    send: (request: object) => socket.send(JSON.stringify(request)),
    /** The answer to request `id`, once it comes (or null if the socket closes first). */
    answer: async (id: number) => {
      while (!answers.has(id) && socket.readyState === socket.OPEN) await Promise.race([once(socket, 'message'), once(socket, 'close')]);
      return answers.get(id) ?? null;
    },
  };
}

export function agentLimitCases(target: () => AuthTarget): void {
  test(`agent: ${AGENT_MAX_PENDING_REQUESTS} requests in flight on one socket; the next is refused BUSY, the socket stays open, and a finished one frees its place`, async () => {
    const t = target();
    const s = await session(t);
    // A watch stays in flight until it is cancelled; requests on one socket are taken in order.
    for (let id = 1; id <= AGENT_MAX_PENDING_REQUESTS; id++) s.send({ id, type: 'watch' });
    const over = AGENT_MAX_PENDING_REQUESTS + 1;
    s.send({ id: over, type: 'status' });
    const refused = await s.answer(over);
    assert.equal(refused?.type, 'error');
    assert.equal(refused?.error?.code, 'BUSY');
    assert.match(refused?.error?.message ?? '', new RegExp(`more than ${AGENT_MAX_PENDING_REQUESTS} requests in flight`));
    s.send({ id: 1, type: 'cancel' });
    assert.equal((await s.answer(1))?.type, 'result', 'the cancelled watch ends');
    s.send({ id: over + 1, type: 'status' });
    assert.equal((await s.answer(over + 1))?.type, 'result', 'its place is free again');
    assert.equal(s.closed(), null);
    s.ws.close();
    await agentStillServes(t);
  });

  test(`agent: it trusts at most ${CONTROLLER_KEYS_MAX} controller keys; one more is refused, and revoking one makes room`, async () => {
    const t = target();
    const s = await session(t);
    let id = 0;
    const call = async (request: object) => {
      s.send({ id: ++id, ...request });
      return (await s.answer(id)) as { type: string; result?: { keys: Array<{ name: string | null }> }; error?: { code: string; message: string } } | null;
    };
    const newKey = async (name: string) => {
      const { publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
      const { x = '' } = await exportJWK(publicKey);
      return { kid: `kid-${name}`, name, jwk: { kty: 'OKP', crv: 'Ed25519', x } };
    };
    const listed = (await call({ type: 'keys' }))?.result?.keys.length ?? 0;
    const added: string[] = [];
    try {
      for (let i = listed; i < CONTROLLER_KEYS_MAX; i++) {
        const name = `limit-${i}`;
        assert.equal((await call({ type: 'keys-add', key: await newKey(name) }))?.type, 'result');
        added.push(name);
      }
      const refused = await call({ type: 'keys-add', key: await newKey('one-too-many') });
      assert.equal(refused?.error?.code, 'TOO_MANY_KEYS');
      assert.match(refused?.error?.message ?? '', new RegExp(`trusts ${CONTROLLER_KEYS_MAX} keys already`));
      assert.equal((await call({ type: 'keys-revoke', key: added.pop() }))?.type, 'result');
      assert.equal((await call({ type: 'keys-add', key: await newKey('room-again') }))?.type, 'result');
      added.push('room-again');
    } finally {
      // The agent is shared with the other cases: it goes back to the keys it had.
      for (const name of added) await call({ type: 'keys-revoke', key: name });
    }
    s.ws.close();
    await agentStillServes(t);
  });

  test(`agent: a real message of ${WS_MAX_PAYLOAD_BYTES} bytes is read (and answered as a bad request); one byte more closes the socket with 1009`, async () => {
    const t = target();
    // A JSON string padded to the exact size: valid JSON, not a request.
    const message = (bytes: number) => `"${randomBytes(bytes).toString('base64').slice(0, bytes - 2)}"`;
    const s = await session(t);
    s.ws.send(message(WS_MAX_PAYLOAD_BYTES));
    assert.match((await s.answer(-1))?.error?.code ?? '', /BAD_REQUEST/, 'the largest message is read, and refused as a request');
    s.ws.send(message(WS_MAX_PAYLOAD_BYTES + 1));
    s.send({ id: 2, type: 'status' });
    assert.equal(await s.answer(2), null, 'nothing after it is answered');
    if (s.closed() === null) await once(s.ws, 'close');
    assert.equal(s.closed(), 1009);
    await agentStillServes(t);
  });

  test(`agent: sockets opened all at once from one address: ${AGENT_MAX_CONNECTIONS_PER_PEER} open, the rest get 429, and closing gives the places back`, async () => {
    const t = target();
    const tries = AGENT_MAX_TCP_PER_PEER - 2;
    const results = await Promise.all(Array.from({ length: tries }, () => open(t)));
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 101).length, AGENT_MAX_CONNECTIONS_PER_PEER, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 429).length, tries - AGENT_MAX_CONNECTIONS_PER_PEER, statuses.join(' '));
    await Promise.all(results.map((r) => r.ws && new Promise((resolve) => (r.ws!.once('close', resolve), r.ws!.close()))));
    await agentStillServes(t);
  });

  test(`agent: silent TCP connections past ${AGENT_MAX_TCP_PER_PEER} per address are dropped at once, and a silent one lasts at most the handshake timeout`, async () => {
    const t = target();
    const sockets = await silentConnections(t, AGENT_MAX_TCP_PER_PEER + 8);
    try {
      const dropped = await droppedAtOnce(sockets);
      // The earlier tests' connections may still be closing on the agent's side: a place or two more may be taken.
      const n = dropped.filter(Boolean).length;
      assert.ok(n >= 8 && n <= 10, `the connections past the cap are closed at once (${n} of ${sockets.length})`);
      const kept = sockets.filter((_, i) => !dropped[i]);
      const timedOut = await Promise.all(kept.map((s) => Promise.race([closed(s).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), HANDSHAKE_TIMEOUT_MS * 3))])));
      assert.ok(timedOut.every(Boolean), 'a connection that never starts TLS is closed after the handshake timeout');
    } finally {
      for (const s of sockets) s.destroy();
    }
    await agentStillServes(t);
  });

  // Each address stays under its own cap, so only the total can stop them.
  const perAddress = AGENT_MAX_TCP_PER_PEER - 1;
  const addresses = Array.from({ length: Math.ceil(AGENT_MAX_TCP_TOTAL / perAddress) + 1 }, (_, i) => `127.0.0.${i + 2}`);
  test(`agent: ${perAddress} silent TCP connections from each of ${addresses.length} addresses: it holds ${AGENT_MAX_TCP_TOTAL} in all and drops the rest at once`, async () => {
    const t = target();
    assert.equal(t.address.host, '127.0.0.1', 'the other loopback addresses reach only an agent on this machine');
    const sockets = (await Promise.all(addresses.map((from) => silentConnections(t, perAddress, from)))).flat();
    try {
      const dropped = await droppedAtOnce(sockets);
      const held = dropped.filter((d) => !d).length;
      // Connections of the earlier tests may still be closing on the agent's side: a place or two more may be taken.
      assert.ok(held <= AGENT_MAX_TCP_TOTAL && held >= AGENT_MAX_TCP_TOTAL - 2, `${held} of ${sockets.length} held`);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await agentStillServes(t);
  });
}
