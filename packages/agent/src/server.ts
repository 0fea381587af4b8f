import { setTimeout as sleep } from 'node:timers/promises';
import { createHmac } from 'node:crypto';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  AGENT_MAX_CONNECTIONS_PER_PEER,
  AGENT_MAX_TCP_PER_PEER,
  AGENT_MAX_TCP_TOTAL,
  AGENT_PATHS,
  AGENT_SHUTDOWN_GRACE_MS,
  CONTROLLER_FEATURES_HEADER,
  controllerFeatures,
  HANDSHAKE_TIMEOUT_MS,
  PlumbError,
  WS_MAX_PAYLOAD_BYTES,
  type EnrolResult,
  type Request,
} from '@plumb/shared';
import { AuthError, type TokenVerifier } from './auth.js';
import { forgetEnrolmentSecret, type ConfigStore } from './config.js';
import { KeyRing } from './ops/keys.js';
import type { TlsIdentity } from './identity.js';
import { log } from './log.js';
import type { Locks } from './ops/context.js';
import type { AgentControl, Facts } from './requests.js';
import { Session } from './session.js';
import { wireError } from './wire.js';
import type { StateStore } from './state.js';

export interface AgentServerOptions {
  config: ConfigStore;
  state: StateStore;
  stateDir: string;
  version: string;
  identity: TlsIdentity;
  verifier: TokenVerifier;
  facts: Facts;
  /** Shared with the monitor, which checks an API only while no operation on it runs. */
  locks: Locks;
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
  const config = opts.config;
  // The secret stays until the first authenticated socket opens (below): an enrolment answer lost
  // on the way is asked for again and given again, the same, so it never locks the controller out.
  const enrolment = async (req: IncomingMessage, res: ServerResponse) => {
    try {
      await opts.verifier.verify(req.headers.authorization);
    } catch (err) {
      log.warn('enrolment refused', { reason: (err as Error).message, peer: req.socket.remoteAddress });
      return sendJson(res, 401, wireError(new AuthError('unauthorized')));
    }
    const secret = config.get().enrolmentSecret;
    if (secret === undefined) {
      log.warn('second enrolment refused', { peer: req.socket.remoteAddress });
      return sendJson(res, 409, wireError(new PlumbError('ALREADY_ENROLLED', 'this agent is already enrolled', 'a droplet is enrolled once, by the controller that provisioned it')));
    }
    const proof = createHmac('sha256', Buffer.from(secret, 'hex')).update(opts.identity.fingerprint).digest('hex');
    if (opts.state.get().enrolledAt === null) await opts.state.update((s) => ({ ...s, enrolledAt: s.enrolledAt ?? new Date().toISOString() }));
    log.info('enrolled', { peer: req.socket.remoteAddress, fingerprint: opts.identity.fingerprint });
    const result: EnrolResult = { fingerprint: opts.identity.fingerprint, proof };
    sendJson(res, 200, result);
  };
  // Two plain routes; everything else goes through the WebSocket (the `upgrade` handler below).
  const routes = (req: IncomingMessage, res: ServerResponse) => {
    const path = pathOf(req.url);
    if (req.method === 'GET' && path === AGENT_PATHS.live) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('ok');
      return;
    }
    if (req.method === 'POST' && path === AGENT_PATHS.enrol) {
      enrolment(req, res).catch((err: Error) => {
        log.error('enrolment failed', { error: err.message });
        if (!res.headersSent) sendJson(res, 500, wireError(new PlumbError('INTERNAL', 'enrolment failed on the droplet')));
      });
      return;
    }
    sendJson(res, 404, { code: 'NOT_FOUND', message: 'no such endpoint' });
  };

  // Before anything is known of a peer it may only hold so much: a TLS handshake of its own
  // bounded time (Node's default is 120 s), a few connections per address, a cap in all.
  const server = https.createServer({ key: opts.identity.key, cert: opts.identity.cert, handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, routes);
  server.headersTimeout = HANDSHAKE_TIMEOUT_MS;
  server.requestTimeout = HANDSHAKE_TIMEOUT_MS;
  server.maxConnections = AGENT_MAX_TCP_TOTAL;
  const tcpPerPeer = new Map<string, number>();
  server.on('connection', (tcp: Socket) => {
    const peer = tcp.remoteAddress ?? 'unknown';
    const held = tcpPerPeer.get(peer) ?? 0;
    if (held >= AGENT_MAX_TCP_PER_PEER) {
      tcp.destroy();
      return;
    }
    tcpPerPeer.set(peer, held + 1);
    tcp.once('close', () => {
      const left = (tcpPerPeer.get(peer) ?? 1) - 1;
      if (left > 0) tcpPerPeer.set(peer, left);
      else tcpPerPeer.delete(peer);
    });
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: WS_MAX_PAYLOAD_BYTES });
  const perPeer = new Map<string, number>();
  /** Requests being answered, by type: a stopping agent lets them finish (bounded). */
  const inFlight = new Map<Promise<unknown>, Request['type']>();
  const locks = opts.locks;
  /** Which controller key opened each socket, so revoking a key closes its sockets. */
  const socketsByKid = new Map<WebSocket, string>();
  const control: AgentControl = {
    stateDir: opts.stateDir,
    version: opts.version,
    keys: new KeyRing(config, opts.verifier, (kid) => {
      for (const [ws, k] of socketsByKid) if (k === kid) ws.close(4001, 'controller key revoked');
    }),
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node drops the socket's error listener on upgrade: a peer resetting it now must not crash the agent.
    const onSocketError = (err: Error) => log.warn('socket error during upgrade', { error: err.message });
    socket.on('error', onSocketError);
    /** Gives back this socket's place under the per-address cap, once. */
    let release = () => {};
    void (async () => {
      const peer = req.socket.remoteAddress ?? 'unknown';
      if (pathOf(req.url) !== AGENT_PATHS.socket) return refuse(socket, 404, 'Not Found');
      if ((perPeer.get(peer) ?? 0) >= AGENT_MAX_CONNECTIONS_PER_PEER) return refuse(socket, 429, 'Too Many Requests');
      // The place is taken now, before the token's (asynchronous) check: sockets arriving together
      // cannot all pass the cap while each waits for its check.
      perPeer.set(peer, (perPeer.get(peer) ?? 0) + 1);
      release = () => {
        release = () => {};
        perPeer.set(peer, (perPeer.get(peer) ?? 1) - 1);
      };
      let kid: string;
      try {
        kid = await opts.verifier.verify(req.headers.authorization);
      } catch (err) {
        release();
        log.warn('socket refused', { reason: (err as Error).message, peer });
        return refuse(socket, 401, 'Unauthorized');
      }
      // Until a controller has pinned this agent, a token may have gone to whoever answered
      // first: it is good for enrolment (which needs the secret) and nothing else.
      if (opts.state.get().enrolledAt === null) {
        release();
        log.warn('socket refused before enrolment', { peer });
        return refuse(socket, 403, 'Forbidden');
      }
      // The first authenticated socket shows the controller has its enrolment answer: burn the secret.
      if (config.get().enrolmentSecret !== undefined) {
        await forgetEnrolmentSecret(config);
        log.info('enrolment secret burnt', { peer });
      }
      socket.off('error', onSocketError);
      if (socket.destroyed) return release();
      // ws aborts a bad handshake without calling back: the place comes back when the socket closes.
      socket.once('close', () => release());
      wss.handleUpgrade(req, socket, head, (ws) => {
        socketsByKid.set(ws, kid);
        ws.once('close', () => {
          release();
          socketsByKid.delete(ws);
        });
        void new Session(ws, opts.facts, { state: opts.state, locks }, inFlight, { kid, features: controllerFeatures(req.headers[CONTROLLER_FEATURES_HEADER]) }, control).start().catch((err: Error) => log.warn('session failed to start', { error: err.message }));
      });
    })().catch((err: Error) => {
      release();
      log.warn('upgrade failed', { error: err.message });
      refuse(socket, 400, 'Bad Request');
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.get().port, config.get().host ?? '0.0.0.0', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.get().port;
  log.info('listening', { port });

  return {
    port,
    async close() {
      server.close();
      const grace = sleep(AGENT_SHUTDOWN_GRACE_MS, undefined, { ref: false });
      await Promise.race([Promise.allSettled([...inFlight.keys()]), grace]);
      for (const ws of wss.clients) ws.close(1001, 'agent stopping');
      server.closeAllConnections();
    },
  };
}

/** The request's path, or undefined when its target is not a URL at all. */
function pathOf(target: string | undefined): string | undefined {
  try {
    return new URL(target ?? '/', 'https://agent').pathname;
  } catch {
    return undefined;
  }
}

function refuse(socket: Duplex, status: number, text: string): void {
  // Destroyed only once the answer is written: a destroy() straight after end() could drop it
  // from TLS's buffer, and the peer saw a reset instead of the status (1 in 30 refusals on loopback).
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
}
