import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import WebSocket from 'ws';
import { AGENT_MAX_CONNECTIONS_PER_PEER, AGENT_MAX_TCP_PER_PEER, AGENT_PATHS, HANDSHAKE_TIMEOUT_MS } from '@plumb/shared';
import { connectTls } from '@plumb/controller/agent/client';
import { tokenFor } from '@plumb/controller/agent/tokens';
import type { AuthTarget } from './agent-auth.cases.js';
import { agentStillServes } from './agent-frames.cases.js';

/**
 * What one address can hold on the agent before and after authenticating, run against an
 * enrolled agent it is the only client of: each cap is crossed and the agent then serves again.
 */

/** Opens an authenticated WebSocket; resolves with the HTTP status (101 = open) and the socket. */
async function open(t: AuthTarget): Promise<{ status: number; ws?: WebSocket }> {
  const token = await tokenFor(t.key, t.dropletUuid);
  const socket = await connectTls(t.address, t.pin);
  const ws = new WebSocket(`wss://${t.address.host}:${t.address.port}${AGENT_PATHS.socket}`, { createConnection: () => socket, headers: { authorization: `Bearer ${token}` } });
  return new Promise((resolve) => {
    ws.once('upgrade', () => resolve({ status: 101, ws }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once('error', () => resolve({ status: 0 }));
  });
}

const closedWithin = (socket: net.Socket, ms: number) =>
  new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });

export function agentLimitCases(target: () => AuthTarget): void {
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
    const sockets = await Promise.all(
      Array.from({ length: AGENT_MAX_TCP_PER_PEER + 8 }, () => new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(t.address.port, t.address.host, () => resolve(s));
        s.on('error', () => {});
        s.once('error', reject);
      })),
    );
    try {
      const dropped = await Promise.all(sockets.map((s) => closedWithin(s, 1000)));
      // The earlier tests' connections may still be closing on the agent's side: a place or two more may be taken.
      const n = dropped.filter(Boolean).length;
      assert.ok(n >= 8 && n <= 10, `the connections past the cap are closed at once (${n} of ${sockets.length})`);
      const kept = sockets.filter((_, i) => !dropped[i]);
      const timedOut = await Promise.all(kept.map((s) => closedWithin(s, HANDSHAKE_TIMEOUT_MS + 5000)));
      assert.ok(timedOut.every(Boolean), 'a connection that never starts TLS is closed after the handshake timeout');
    } finally {
      for (const s of sockets) s.destroy();
    }
    await agentStillServes(t);
  });
}
