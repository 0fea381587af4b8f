import { createHmac } from 'node:crypto';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import express from 'express';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  AGENT_MAX_CONNECTIONS_PER_PEER,
  AGENT_MAX_PENDING_REQUESTS,
  AGENT_PATHS,
  AGENT_SHUTDOWN_GRACE_MS,
  HANDSHAKE_TIMEOUT_MS,
  PlumbError,
  Request,
  WS_MAX_PAYLOAD_BYTES,
  type AgentConfig,
  type AgentMessage,
  type EnrolResult,
  type Hello,
  type WireError,
} from '@plumb/shared';
import { AuthError, type TokenVerifier } from './auth.js';
import { forgetEnrolmentSecret } from './config.js';
import type { TlsIdentity } from './identity.js';
import { log } from './log.js';
import { handleRequest, type Facts } from './requests.js';
import type { StateStore } from './state.js';

export interface AgentServerOptions {
  config: AgentConfig;
  configFile: string;
  state: StateStore;
  identity: TlsIdentity;
  verifier: TokenVerifier;
  facts: Facts;
}

export interface AgentServer {
  port: number;
  /** Stops accepting, lets in-flight requests finish (bounded), closes sockets. */
  close(): Promise<void>;
}

/**
 * The agent's TLS server: plain HTTP endpoints (liveness, enrolment) and the WebSocket the
 * controller drives it through. Tokens are checked in the HTTP `upgrade` handler, before any
 * WebSocket exists: a bad one gets 401 and the socket is destroyed.
 */
export async function startAgentServer(opts: AgentServerOptions): Promise<AgentServer> {
  let config = opts.config;
  const app = express();
  app.disable('x-powered-by');
  app.get(AGENT_PATHS.live, (_req, res) => void res.type('text/plain').send('ok'));

  let enrolling = false;
  app.post(AGENT_PATHS.enrol, async (req, res) => {
    try {
      await opts.verifier.verify(req.headers.authorization);
    } catch (err) {
      log.warn('enrolment refused', { reason: (err as Error).message, peer: req.socket.remoteAddress });
      res.status(401).json(wireError(new AuthError('unauthorized')));
      return;
    }
    if (enrolling || opts.state.get().enrolledAt !== null || config.enrolmentSecret === undefined) {
      log.warn('second enrolment refused', { peer: req.socket.remoteAddress });
      res.status(409).json(wireError(new PlumbError('ALREADY_ENROLLED', 'this agent is already enrolled', 'a droplet is enrolled once, by the controller that provisioned it')));
      return;
    }
    enrolling = true;
    try {
      const proof = createHmac('sha256', Buffer.from(config.enrolmentSecret, 'hex')).update(opts.identity.fingerprint).digest('hex');
      await opts.state.update((s) => ({ ...s, enrolledAt: new Date().toISOString() }));
      config = await forgetEnrolmentSecret(opts.configFile, config);
      log.info('enrolled', { peer: req.socket.remoteAddress, fingerprint: opts.identity.fingerprint });
      const result: EnrolResult = { fingerprint: opts.identity.fingerprint, proof };
      res.json(result);
    } finally {
      enrolling = false;
    }
  });
  app.use((_req, res) => void res.status(404).json({ code: 'NOT_FOUND', message: 'no such endpoint' }));

  const server = https.createServer({ key: opts.identity.key, cert: opts.identity.cert }, app);
  server.headersTimeout = HANDSHAKE_TIMEOUT_MS;
  server.requestTimeout = HANDSHAKE_TIMEOUT_MS;
  const wss = new WebSocketServer({ noServer: true, maxPayload: WS_MAX_PAYLOAD_BYTES });
  const perPeer = new Map<string, number>();
  const inFlight = new Set<Promise<unknown>>();

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void (async () => {
      const peer = req.socket.remoteAddress ?? 'unknown';
      if (new URL(req.url ?? '/', 'https://agent').pathname !== AGENT_PATHS.socket) return refuse(socket, 404, 'Not Found');
      if ((perPeer.get(peer) ?? 0) >= AGENT_MAX_CONNECTIONS_PER_PEER) return refuse(socket, 429, 'Too Many Requests');
      try {
        await opts.verifier.verify(req.headers.authorization);
      } catch (err) {
        log.warn('socket refused', { reason: (err as Error).message, peer });
        return refuse(socket, 401, 'Unauthorized');
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        perPeer.set(peer, (perPeer.get(peer) ?? 0) + 1);
        ws.once('close', () => perPeer.set(peer, (perPeer.get(peer) ?? 1) - 1));
        void serveSocket(ws, opts.facts, inFlight);
      });
    })();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host ?? '0.0.0.0', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info('listening', { port });

  return {
    port,
    async close() {
      server.close();
      const grace = new Promise((resolve) => setTimeout(resolve, AGENT_SHUTDOWN_GRACE_MS).unref());
      await Promise.race([Promise.allSettled([...inFlight]), grace]);
      for (const ws of wss.clients) ws.close(1001, 'agent stopping');
      server.closeAllConnections();
    },
  };
}

async function serveSocket(ws: WebSocket, facts: Facts, inFlight: Set<Promise<unknown>>): Promise<void> {
  const send = (message: AgentMessage) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };
  let pending = 0;
  ws.on('message', (data, isBinary) => {
    if (isBinary) return send({ type: 'error', id: -1, error: { code: 'BAD_REQUEST', message: 'expected a JSON request' } });
    let request: Request;
    try {
      const parsed = Request.safeParse(JSON.parse(String(data)));
      if (!parsed.success) throw new PlumbError('BAD_REQUEST', `invalid request: ${parsed.error.issues[0]?.message ?? 'unknown'}`);
      request = parsed.data;
    } catch (err) {
      return send({ type: 'error', id: -1, error: wireError(err) });
    }
    if (pending >= AGENT_MAX_PENDING_REQUESTS) {
      return send({ type: 'error', id: request.id, error: { code: 'BUSY', message: `more than ${AGENT_MAX_PENDING_REQUESTS} requests in flight on one socket` } });
    }
    pending++;
    const work = handleRequest(request, facts, send).then(
      (result) => send({ type: 'result', id: request.id, result }),
      (err: unknown) => send({ type: 'error', id: request.id, error: wireError(err) }),
    );
    inFlight.add(work);
    void work.finally(() => {
      pending--;
      inFlight.delete(work);
    });
  });
  const hello: Hello = await facts.hello();
  send(hello);
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  socket.destroy();
}

export function wireError(err: unknown): WireError {
  if (err instanceof PlumbError) return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  log.error('unexpected error', { error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  return { code: 'INTERNAL', message: 'the agent failed unexpectedly (see `journalctl -u plumb-agent` on the droplet)' };
}
