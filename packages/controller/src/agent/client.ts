import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import https from 'node:https';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { setTimeout as delay } from 'node:timers/promises';
import WebSocket from 'ws';
import { versionSkew } from './version.js';
import {
  AGENT_PATHS,
  AgentMessage,
  BACKPRESSURE_POLL_MS,
  BUNDLE_HIGH_WATER_BYTES,
  CONTROLLER_FEATURES,
  CONTROLLER_FEATURES_HEADER,
  EnrolResult,
  ENROLMENT_ATTEMPTS,
  ENROLMENT_RETRY_DELAY_MS,
  AGENT_HTTP_BODY_MAX_BYTES,
  HANDSHAKE_TIMEOUT_MS,
  Hello,
  HelloHead,
  isErrorCode,
  PlumbError,
  pollUntil,
  ResultSchemas,
  WS_MAX_PAYLOAD_BYTES,
  type AgentEvent,
  type Heartbeat,
  type LogEntry,
  type RequestInput,
  type WireError,
} from '@plumb/shared';

/** The agent's TLS certificate is not the one pinned for this droplet: nothing was sent to it. */
export class PinMismatchError extends PlumbError {
  override name = 'PinMismatchError';
  constructor(host: string, expected: string, actual: string) {
    super('PIN_MISMATCH', `the agent at ${host} presented certificate ${actual.slice(0, 16)}…, not the pinned ${expected.slice(0, 16)}…; refusing to talk to it`, 'if the droplet was rebuilt, destroy it with `plumb destroy` and provision again; otherwise someone may be intercepting traffic');
  }
}

/** The droplet's agent answered with an error for one request; a failed step carries its log. */
export class RemoteError extends PlumbError {
  override name = 'RemoteError';
  readonly step: string | undefined;
  readonly log: string[];
  /** What `log` is, as the CLI titles it. */
  get logTitle(): string {
    if (this.step?.startsWith('installing R packages')) return 'last lines of its output';
    return this.step === 'health check' ? 'last log lines of the new release' : 'details';
  }
  constructor(error: WireError) {
    // A code this plumb does not know comes from a newer agent: a failure, said as it was sent.
    super(isErrorCode(error.code) ? error.code : 'INTERNAL', isErrorCode(error.code) ? error.message : `${error.message} (${error.code})`, error.hint);
    this.step = error.step;
    this.log = error.log ?? [];
  }
}

/** A request without its id (the connection numbers them). */
export type RequestBody = RequestInput extends infer R ? (R extends RequestInput ? Omit<R, 'id'> : never) : never;

export interface AgentAddress {
  host: string;
  port: number;
}

/** JSON from the agent, or undefined when it is not JSON (then the schema check refuses it). */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** SHA-256 of the peer certificate's DER, lower-case hex. */
export function peerFingerprint(socket: tls.TLSSocket): string {
  const cert = socket.getPeerCertificate();
  if (!cert?.raw) throw new PlumbError('AGENT_TLS', 'the agent presented no certificate');
  return createHash('sha256').update(cert.raw).digest('hex');
}

/**
 * A TLS connection to the agent, checked against the pin BEFORE anything is written to it, so a
 * token never reaches an impostor. Without a pin (first contact), any certificate is accepted and
 * the caller must prove it (enrolment).
 */
export function connectTls(address: AgentAddress, pin: string | null, signal?: AbortSignal): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // The agent's certificate is self-signed; trust comes from the pin, not from a CA. So no CA
    // list either (`ca: []`): node's default parses its ~140 root certificates into the context,
    // 30-45 ms of CPU on every command that talks to an agent, for a check that is not made.
    const socket = tls.connect({ host: address.host, port: address.port, rejectUnauthorized: false, ca: [], servername: '', timeout: HANDSHAKE_TIMEOUT_MS });
    // Aborted (the caller no longer wants it): closed whether the handshake is done or not.
    signal?.addEventListener('abort', () => socket.destroy(new PlumbError('AGENT_UNREACHABLE', `the connection to ${address.host}:${address.port} was abandoned`)), { once: true });
    socket.once('timeout', () => socket.destroy(new PlumbError('AGENT_UNREACHABLE', `the agent at ${address.host}:${address.port} did not answer within ${HANDSHAKE_TIMEOUT_MS / 1000} s`)));
    socket.once('error', (err) => reject(err instanceof PlumbError ? err : new PlumbError('AGENT_UNREACHABLE', `cannot reach the agent at ${address.host}:${address.port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    socket.once('secureConnect', () => {
      socket.setTimeout(0);
      const actual = peerFingerprint(socket);
      if (pin !== null && actual !== pin) {
        socket.destroy();
        reject(new PinMismatchError(address.host, pin, actual));
        return;
      }
      resolve(socket);
    });
  });
}

export interface HttpAnswer {
  status: number;
  body: string;
  fingerprint: string;
}

/** One HTTP request over an open TLS socket to the agent (or its bootstrap); `body` is streamed. */
export function httpsOver(socket: tls.TLSSocket, method: string, path: string, headers: Record<string, string>, body?: Readable): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const fingerprint = peerFingerprint(socket);
    const req = https.request({ method, path, headers, createConnection: () => socket, timeout: HANDSHAKE_TIMEOUT_MS }, (res) => {
      // The peer may not be pinned yet (enrolment, the bootstrap): what it sends is bounded.
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (text.length > AGENT_HTTP_BODY_MAX_BYTES) req.destroy(new PlumbError('AGENT_PROTOCOL', `the agent's answer to ${path} is over ${AGENT_HTTP_BODY_MAX_BYTES / 1024} KiB`, 'is this address really a plumb droplet?'));
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, fingerprint }));
    });
    req.on('timeout', () => req.destroy(new PlumbError('AGENT_UNREACHABLE', `the agent did not answer ${path} in time`)));
    req.on('error', reject);
    if (body) {
      // The body goes only once the server said it wants it: a refusal (401, wrong size) comes before a byte is sent.
      req.setHeader('expect', '100-continue');
      req.once('continue', () => body.on('error', (err) => req.destroy(err)).pipe(req));
      req.once('response', () => req.once('close', () => body.destroy()));
      req.flushHeaders();
    } else {
      req.end();
    }
  });
}

/** True when something answers the agent's liveness endpoint (no trust implied). */
export async function agentAnswers(address: AgentAddress): Promise<boolean> {
  try {
    const socket = await connectTls(address, null);
    const answer = await httpsOver(socket, 'GET', AGENT_PATHS.live, {});
    return answer.status === 200;
  } catch {
    return false;
  }
}

/**
 * Enrols a new agent: it must prove it holds the droplet's one-time secret by returning
 * HMAC(secret, fingerprint of the certificate it serves on THIS connection). Returns the
 * fingerprint to pin. An answer lost on the way is asked for again (a fresh token each time: the
 * agent refuses a replayed one); a refusal or a bad proof is not.
 */
export async function enrol(address: AgentAddress, token: () => Promise<string>, secretHex: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await enrolOnce(address, await token(), secretHex);
    } catch (err) {
      const lost = !(err instanceof PlumbError) || err.code === 'AGENT_UNREACHABLE' || err.code === 'DISCONNECTED';
      if (!lost || attempt >= ENROLMENT_ATTEMPTS) throw err;
      await delay(ENROLMENT_RETRY_DELAY_MS);
    }
  }
}

async function enrolOnce(address: AgentAddress, token: string, secretHex: string): Promise<string> {
  const socket = await connectTls(address, null);
  const answer = await httpsOver(socket, 'POST', AGENT_PATHS.enrol, { authorization: `Bearer ${token}` });
  if (answer.status === 409) throw new PlumbError('ALREADY_ENROLLED', `the agent at ${address.host} is already enrolled and refuses a second enrolment`, 'a droplet is enrolled once; if plumb lost its record of it, destroy it and provision again');
  if (answer.status !== 200) throw new PlumbError('ENROLMENT_FAILED', `the agent at ${address.host} refused enrolment (HTTP ${answer.status})`);
  const parsed = EnrolResult.safeParse(parseJson(answer.body));
  if (!parsed.success) throw new PlumbError('ENROLMENT_FAILED', `the agent at ${address.host} sent an invalid enrolment answer`);
  const { fingerprint, proof } = parsed.data;
  const expected = createHmac('sha256', Buffer.from(secretHex, 'hex')).update(answer.fingerprint).digest();
  if (fingerprint !== answer.fingerprint || !timingSafeEqual(expected, Buffer.from(proof, 'hex'))) {
    throw new PlumbError('ENROLMENT_PROOF', `the agent at ${address.host} could not prove it is the droplet plumb created (bad enrolment proof)`, 'do not use this droplet: destroy it and provision again');
  }
  return fingerprint;
}

/** Events a running request may produce before its answer. */
export interface RequestEvents {
  onProgress?: (step: string, detail?: string) => void;
  onLog?: (entries: LogEntry[]) => void;
  /** A `watch`: events as the agent records them, and its heartbeat now and then. */
  onEvent?: (event: AgentEvent) => void;
  onHeartbeat?: (heartbeat: Heartbeat) => void;
  /** A deploy with a file list: the indexes of the files the agent wants in the bundle. */
  onNeed?: (files: number[]) => void;
  /** An export: the next piece of the release's bundle. */
  onChunk?: (data: Buffer) => void;
}

/** A request in flight: its id (to cancel it, or to stream a bundle after it) and its answer. */
export interface PendingRequest<T> {
  id: number;
  result: Promise<T>;
}

/** An open, authenticated socket to one agent. */
export class AgentConnection {
  private nextId = 0;
  private readonly pending = new Map<number, RequestEvents & { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(
    private readonly ws: WebSocket,
    /** What every agent says first, whatever its version. */
    readonly head: HelloHead,
    private readonly fullHello: Hello | undefined,
  ) {}

  /** The agent's whole hello; only an agent of this plumb's protocol has one this plumb reads. */
  get hello(): Hello {
    if (!this.fullHello) throw new PlumbError('AGENT_PROTOCOL', `the agent ${this.head.agentVersion} speaks protocol ${this.head.protocol}`);
    return this.fullHello;
  }

  /**
   * Opens the socket and reads the hello. An agent of another protocol is refused with the error
   * that says which side to upgrade (see version.ts), unless `allowSkew` (upgrade, status).
   */
  static async open(address: AgentAddress, pin: string, token: string | Promise<string>, opts: { droplet?: string; allowSkew?: boolean; signal?: AbortSignal } = {}): Promise<AgentConnection> {
    // The token may still be in the making (reading the key, signing): the handshake, which needs
    // none, goes meanwhile. A token that fails is the error to tell at once (a missing key is this
    // machine's to fix whatever the network does, and an agent that never answers must not delay
    // it): the handshake is abandoned and its socket closed.
    // The caller may abandon it too (a deploy whose directory was refused meanwhile).
    opts.signal?.throwIfAborted();
    const abandon = new AbortController();
    opts.signal?.addEventListener('abort', () => abandon.abort(), { once: true });
    const connecting = connectTls(address, pin, abandon.signal);
    connecting.catch(() => undefined); // told below, unless the token's error is told first
    let signed: string;
    try {
      signed = await token;
    } catch (err) {
      abandon.abort();
      throw err;
    }
    const socket = await connecting;
    // An agent shutting down (a restart, an upgrade) may close the socket after the handshake,
    // while the token was still being signed. An HTTP request on a closed socket waits for events
    // that never come, with nothing to keep node running: it would leave with 13, silently.
    if (socket.destroyed || !socket.writable) {
      socket.destroy();
      throw new PlumbError('AGENT_UNREACHABLE', `the agent at ${address.host} closed the connection before saying hello`);
    }
    const ws = new WebSocket(`wss://${address.host}:${address.port}${AGENT_PATHS.socket}`, {
      createConnection: () => socket,
      headers: { authorization: `Bearer ${signed}`, [CONTROLLER_FEATURES_HEADER]: Object.values(CONTROLLER_FEATURES).join(',') },
      maxPayload: WS_MAX_PAYLOAD_BYTES,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    const raw = await new Promise<unknown>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => reject(
          res.statusCode === 401
            ? new PlumbError('UNAUTHORIZED', `the agent at ${address.host} does not trust this controller's key (HTTP 401)`, "send `plumb keys show` to the droplet's owner, who adds it with `plumb keys add`")
            : new PlumbError('AGENT_REFUSED', `the agent at ${address.host} refused the connection (HTTP ${res.statusCode})`),
        ));
      ws.once('error', (err) => reject(new PlumbError('AGENT_UNREACHABLE', `lost the agent at ${address.host}: ${err.message}`)));
      // Or closes it during the upgrade, or before its hello.
      ws.once('close', (code) => reject(new PlumbError('AGENT_UNREACHABLE', `the agent at ${address.host} closed the connection before saying hello (code ${code})`)));
      ws.once('message', (data) => resolve(parseJson(String(data))));
    });
    const head = HelloHead.safeParse(raw);
    const hello = Hello.safeParse(raw);
    const refuse = (err: PlumbError) => {
      ws.close(1000);
      return err;
    };
    if (!head.success) throw refuse(new PlumbError('AGENT_PROTOCOL', 'the agent did not say hello'));
    const skew = versionSkew(head.data, opts.droplet ?? address.host);
    if (skew && !opts.allowSkew) throw refuse(skew);
    if (!skew && !hello.success) throw refuse(new PlumbError('AGENT_PROTOCOL', `the agent's hello is not what this controller understands: ${hello.error.issues[0]?.message ?? ''}`));
    const connection = new AgentConnection(ws, head.data, hello.data);
    ws.on('message', (data) => connection.onMessage(String(data)));
    ws.on('close', () => connection.onClose());
    ws.on('error', () => connection.onClose());
    return connection;
  }

  /** Sends one request; the answer's shape is the request type's. */
  start<T>(request: RequestBody, events: RequestEvents = {}): PendingRequest<T> {
    const id = this.nextId++;
    const schema = ResultSchemas[request.type];
    const result = new Promise<T>((resolve, reject) => {
      const check = (value: unknown) => {
        const parsed = schema ? schema.safeParse(value) : { success: true as const, data: value };
        if (parsed.success) resolve(parsed.data as T);
        else reject(new PlumbError('AGENT_PROTOCOL', `the agent's answer to ${request.type} is not what this controller understands: ${parsed.error.issues[0]?.message ?? ''}`, 'plumb and its agent should be the same version'));
      };
      this.pending.set(id, { ...events, resolve: check, reject });
      if (this.ws.readyState !== WebSocket.OPEN) {
        this.pending.delete(id);
        reject(new PlumbError('DISCONNECTED', 'the agent closed the connection'));
        return;
      }
      this.ws.send(JSON.stringify({ ...request, id }), (err) => {
        if (!err || !this.pending.delete(id)) return;
        reject(new PlumbError('DISCONNECTED', `could not send to the agent: ${err.message}`));
      });
    });
    return { id, result };
  }

  request<T>(request: RequestBody, events: RequestEvents = {}): Promise<T> {
    return this.start<T>(request, events).result;
  }

  /** Sends raw bytes (a bundle) once the socket's buffer has room: the agent's pace sets ours. */
  async sendBinary(chunk: Buffer): Promise<void> {
    await pollUntil(
      () => {
        if (this.ws.bufferedAmount <= BUNDLE_HIGH_WATER_BYTES) return true;
        if (this.ws.readyState !== WebSocket.OPEN) throw new PlumbError('DISCONNECTED', 'the agent closed the connection during the upload');
        return undefined;
      },
      // No deadline of its own: it ends when the agent reads again or the socket closes.
      { timeoutMs: Infinity, intervalMs: BACKPRESSURE_POLL_MS },
    );
    await new Promise<void>((resolve, reject) => this.ws.send(chunk, { binary: true }, (err) => (err ? reject(err) : resolve())));
  }

  /** A control message that gets no answer of its own (upload-end, cancel). */
  notify(message: RequestBody & { id: number }): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  close(): void {
    this.ws.close(1000);
  }

  private onMessage(text: string): void {
    const parsed = AgentMessage.safeParse(parseJson(text));
    if (!parsed.success) return;
    const message = parsed.data;
    if (message.type === 'hello') return;
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    switch (message.type) {
      case 'progress':
        waiter.onProgress?.(message.step, message.detail);
        return;
      case 'log':
        waiter.onLog?.(message.entries);
        return;
      case 'event':
        waiter.onEvent?.(message.event);
        return;
      case 'heartbeat':
        waiter.onHeartbeat?.(message.heartbeat);
        return;
      case 'upload-need':
        waiter.onNeed?.(message.files);
        return;
      case 'bundle-chunk':
        waiter.onChunk?.(Buffer.from(message.data, 'base64'));
        return;
      case 'result':
        this.pending.delete(message.id);
        waiter.resolve(message.result);
        return;
      case 'error':
        this.pending.delete(message.id);
        waiter.reject(new RemoteError(message.error));
        return;
    }
  }

  private onClose(): void {
    // What is known: an operation cut before its switch left the previous release serving, and an
    // agent that starts again settles whatever the operation left (ops/reconcile.ts).
    const cut = new PlumbError('DISCONNECTED', 'the agent closed the connection before answering', 'what was serving before still serves unless the switch happened; `plumb status` shows which release is live');
    for (const waiter of this.pending.values()) waiter.reject(cut);
    this.pending.clear();
  }
}
