import type { WebSocket } from 'ws';
import { AGENT_MAX_PENDING_REQUESTS, AGENT_PACKAGE_MAX_BYTES, BACKPRESSURE_POLL_MS, BUNDLE_HIGH_WATER_BYTES, CONTROLLER_FEATURES, eventForStrictController, PlumbError, pollUntil, Request, WS_PING_INTERVAL_MS, type AgentEvent, type AgentMessage, type LogEntry, type StatusResult } from '@plumb/shared';
import { log } from './log.js';
import { watch } from './monitor/watch.js';
import { handleRequest, type AgentControl, type Facts } from './requests.js';
import { Upload } from './upload.js';
import type { OpContext } from './ops/context.js';
import { wireError } from './wire.js';

/** Requests that only read: an upgrade need not wait for them (a followed log may run for hours). */
const READS = new Set<Request['type']>(['facts', 'status', 'logs', 'releases', 'keys', 'cloud-init-wait', 'secrets', 'export']);

/**
 * One controller's socket: requests in (JSON), bundles in (binary frames following a deploy),
 * answers and events out. Each request gets exactly one `result` or `error`.
 */
export class Session {
  private pending = 0;
  private upload: { id: number; upload: Upload } | undefined;
  private readonly running = new Map<number, AbortController>();
  /** A controller from before CONTROLLER_FEATURES.anyEventKind: sent only the event kinds it knows. */
  private readonly strictKinds: boolean;

  constructor(
    private readonly ws: WebSocket,
    private readonly facts: Facts,
    private readonly ops: Omit<OpContext, 'progress'>,
    private readonly inFlight: Map<Promise<unknown>, Request['type']>,
    /** Who opened this socket: its controller key, and the features its controller named (CONTROLLER_FEATURES). */
    private readonly controller: { kid: string; features: readonly string[] },
    private readonly control: AgentControl,
  ) {
    this.strictKinds = !controller.features.includes(CONTROLLER_FEATURES.anyEventKind);
    ws.on('message', (data, isBinary) => (isBinary ? this.onBinary(data as Buffer) : this.onText(String(data))));
    // A malformed frame (oversize, invalid UTF-8, reserved opcode) is an 'error' here, after which ws
    // closes this socket with the matching code; unhandled, it would end the whole agent.
    ws.on('error', (err: Error & { code?: string }) => log.warn('socket error', { error: err.message, code: err.code }));
    // A controller that vanished without closing (a dropped link, a suspended laptop) stops
    // answering pings: its socket is closed, which cancels its operations and frees their locks.
    let answered = true;
    ws.on('pong', () => (answered = true));
    const pinger = setInterval(() => {
      if (!answered) return ws.terminate();
      answered = false;
      ws.ping();
    }, WS_PING_INTERVAL_MS);
    ws.on('close', () => {
      clearInterval(pinger);
      for (const controller of this.running.values()) controller.abort();
      this.upload?.upload.fail(new PlumbError('DISCONNECTED', 'the controller went away during the upload'));
    });
  }

  async start(): Promise<void> {
    this.send(await this.facts.hello());
  }

  private send(message: AgentMessage, sent?: () => void): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(message), sent);
  }

  private eventFor<E extends AgentEvent>(event: E): E {
    return this.strictKinds ? eventForStrictController(event) : event;
  }

  private statusFor(status: StatusResult): StatusResult {
    return this.strictKinds ? { ...status, events: status.events.map((e) => this.eventFor(e)) } : status;
  }

  /** Resolves when the socket's send buffer has room: how log streaming follows the reader. */
  private async drained(): Promise<void> {
    // No deadline of its own: a reader that stops reading is closed by the pings (WS_PING_INTERVAL_MS).
    await pollUntil(() => (this.ws.readyState !== this.ws.OPEN || this.ws.bufferedAmount <= BUNDLE_HIGH_WATER_BYTES ? true : undefined), { timeoutMs: Infinity, intervalMs: BACKPRESSURE_POLL_MS });
  }

  /** Bundle bytes for the deploy in progress; bytes after a refused deploy are dropped. */
  private onBinary(chunk: Buffer): void {
    this.upload?.upload.push(chunk);
  }

  private onText(text: string): void {
    const parsed = parseRequest(text);
    if ('refused' in parsed) return this.send({ type: 'error', id: parsed.id, error: wireError(parsed.refused) });
    const { request } = parsed;
    if (request.type === 'upload-end') {
      if (this.upload?.id === request.id) this.upload.upload.end(request.bytes);
      this.upload = this.upload?.id === request.id ? undefined : this.upload;
      return;
    }
    if (request.type === 'cancel') {
      this.running.get(request.id)?.abort();
      return;
    }
    if ((request.type === 'deploy' || request.type === 'upgrade') && this.upload) {
      return this.send({ type: 'error', id: request.id, error: { code: 'BUSY', message: 'an upload is already under way on this connection', hint: 'send one bundle at a time per connection' } });
    }
    if (this.pending >= AGENT_MAX_PENDING_REQUESTS) {
      return this.send({ type: 'error', id: request.id, error: { code: 'BUSY', message: `more than ${AGENT_MAX_PENDING_REQUESTS} requests in flight on one socket` } });
    }
    this.run(request);
  }

  private run(request: Exclude<Request, { type: 'upload-end' | 'cancel' }>): void {
    this.pending++;
    const controller = new AbortController();
    this.running.set(request.id, controller);
    let upload: Upload | undefined;
    if (request.type === 'deploy') upload = Upload.fromSocket(this.ws);
    if (request.type === 'upgrade') {
      const refusal = () => new PlumbError('AGENT_PACKAGE_TOO_LARGE', `the agent package is over ${AGENT_PACKAGE_MAX_BYTES / 1024 / 1024} MiB`);
      upload = Upload.fromSocket(this.ws, { bytes: AGENT_PACKAGE_MAX_BYTES, refusal });
    }
    if (upload) this.upload = { id: request.id, upload };
    const afterAnswer: Array<() => void> = [];
    const ctx: OpContext = { ...this.ops, progress: (step, detail) => this.send({ type: 'progress', id: request.id, step, ...(detail ? { detail } : {}) }) };
    const sink = {
      signal: controller.signal,
      send: async (entries: LogEntry[]) => {
        this.send({ type: 'log', id: request.id, entries });
        await this.drained();
      },
    };
    const answer =
      request.type === 'watch'
        ? watch(request.sinceEventId, { send: (m) => this.send({ ...(m.type === 'event' ? { ...m, event: this.eventFor(m.event) } : m), id: request.id }), buffered: () => this.ws.bufferedAmount, signal: controller.signal }, this.ops.state)
        : handleRequest(request, {
            facts: this.facts,
            ctx,
            upload,
            sink,
            kid: this.controller.kid,
            control: this.control,
            need: (files) => this.send({ type: 'upload-need', id: request.id, files }),
            chunk: async (data) => {
              if (controller.signal.aborted) throw new PlumbError('DISCONNECTED', 'the controller went away during the export');
              this.send({ type: 'bundle-chunk', id: request.id, data: data.toString('base64') });
              await this.drained();
            },
            othersInFlight: () => [...this.inFlight].filter(([w, type]) => w !== work && !READS.has(type)).length,
            afterAnswer: (fn) => afterAnswer.push(fn),
          });
    const work: Promise<void> = answer.then(
      (result) => this.send({ type: 'result', id: request.id, result: request.type === 'status' ? this.statusFor(result as StatusResult) : result }, () => afterAnswer.forEach((fn) => fn())),
      (err: unknown) => {
        log.warn('request failed', { type: request.type, error: (err as Error).message });
        this.send({ type: 'error', id: request.id, error: wireError(err) });
      },
    );
    // A watch has nothing to finish: a stopping agent does not wait for it.
    if (request.type !== 'watch') this.inFlight.set(work, request.type);
    void work.finally(() => {
      this.pending--;
      this.running.delete(request.id);
      upload?.discard();
      if (upload && upload.counts.receivedBytes > 0) log.info('bundle received', { type: request.type, received_bytes: upload.counts.receivedBytes, peak_queued_bytes: upload.counts.peakQueuedBytes });
      this.inFlight.delete(work);
    });
  }
}

/**
 * A text frame as a request, or a BAD_REQUEST naming the first problem. Anything a client can
 * send ends here (not JSON, JSON that is no object, a wrong field), never in an INTERNAL error;
 * the answer goes under the request's id only when that id is one a controller can match.
 */
function parseRequest(text: string): { request: Request } | { refused: PlumbError; id: number } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { refused: new PlumbError('BAD_REQUEST', 'invalid request: not JSON', 'send one JSON request per text frame'), id: -1 };
  }
  const parsed = Request.safeParse(json);
  if (parsed.success) return { request: parsed.data };
  const id = typeof json === 'object' && json !== null ? (json as { id?: unknown }).id : undefined;
  const issue = parsed.error.issues[0];
  const where = issue?.path.map(String).join('.').slice(0, 100);
  const refused = new PlumbError('BAD_REQUEST', `invalid request: ${issue ? `${where}: ${issue.message.slice(0, 300)}` : 'unknown'}`);
  return { refused, id: typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : -1 };
}
