import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { AGENT_PATHS } from '@plumb/shared';
import { connectTls } from '@plumb/controller/agent/client';
import { tokenFor } from '@plumb/controller/agent/tokens';
import type { AuthTarget } from './agent-auth.cases.js';

/**
 * A WebSocket to the agent opened as the controller opens one (pinned TLS, bearer token), but by
 * hand, with the TLS socket in hand to misbehave with: the one opener of the cases and fault tests.
 * `authorization`: the header to send; a fresh token of the target's key when omitted, none when null.
 */
export async function agentSocket(t: AuthTarget, authorization?: string | null): Promise<{ ws: WebSocket; tls: TLSSocket }> {
  const header = authorization === undefined ? `Bearer ${await tokenFor(t.key, t.dropletUuid)}` : authorization;
  const tls = await connectTls(t.address, t.pin);
  const ws = new WebSocket(`wss://${t.address.host}:${t.address.port}${AGENT_PATHS.socket}`, {
    createConnection: () => tls,
    ...(header === null ? {} : { headers: { authorization: header } }),
  });
  return { ws, tls };
}

/** How the agent answered the upgrade: 101 when the socket opened, else its HTTP status; 0 when the connection failed. */
export function upgradeStatus(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => {
    ws.once('upgrade', () => resolve(101));
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', () => resolve(0));
  });
}
