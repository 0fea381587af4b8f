import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';

export interface LoadReport {
  ok: number;
  /** Requests that got no good answer: a 5xx, a timeout, or a connection error. */
  failed: number;
  /** Of those, the ones lost with their connection (reset, closed under the request, refused). */
  connectionErrors: number;
  /** TCP connections the client opened: with keep-alive, more than `concurrency` means the server closed some. */
  connections: number;
  /** The first few failures, for the assertion message. */
  failures: string[];
  /** How each kept-alive connection that ended before the load did ended (the first few): why a client had to reconnect. */
  closes: string[];
  /** Request latencies in ms, for the benchmarks. */
  latencies: number[];
}

export interface Load {
  stop(): Promise<LoadReport>;
}

export interface LoadOptions {
  rps: number;
  concurrency?: number;
  maxMs?: number;
  keepAlive?: boolean;
  /** Any other HTTP status is a failure too (by default only a 5xx is). */
  expectStatus?: number;
  /** For https:// URLs: the CA to trust and the name to ask for (SNI and Host), the URL's host being an address. */
  tls?: { ca: string; servername: string };
}

/** One request's outcome, told to the load loop. */
interface Outcome {
  ok(latencyMs: number): void;
  fail(why: string, connectionError: boolean): void;
}

/**
 * A steady, bounded load on one URL: `rps` requests per second from `concurrency` loops. Each
 * request on a fresh connection (so nothing is hidden by a kept-alive socket), or with
 * `keepAlive` over `concurrency` kept-alive connections, as browsers and HTTP client pools do
 * (where a server closing an idle connection under a request shows). A failure is a connection
 * error, a timeout or a 5xx. It stops by itself after `maxMs` whatever happens.
 */
export function startLoad(url: string, opts: LoadOptions): Load {
  const concurrency = opts.concurrency ?? 8;
  const client = opts.tls ? https : http;
  const agent = opts.keepAlive ? new client.Agent({ keepAlive: true, maxSockets: concurrency }) : false;
  const counted = new WeakSet<object>();
  const stopping = { value: false };
  const lastAnswer = new WeakMap<object, { count: number; connection: string }>();
  const tls = opts.tls ? { ca: opts.tls.ca, servername: opts.tls.servername, headers: { host: opts.tls.servername } } : {};
  return runLoad(opts, {
    request: (report, outcome) => {
      const started = performance.now();
      const req = client.get(url, { agent, timeout: 10_000, ...tls }, (res) => {
        const seen = lastAnswer.get(res.socket);
        lastAnswer.set(res.socket, { count: (seen?.count ?? 0) + 1, connection: String(res.headers.connection ?? '') });
        res.resume();
        const status = res.statusCode ?? 0;
        const bad = status >= 500 || (opts.expectStatus !== undefined && status !== opts.expectStatus);
        res.on('end', () => (bad ? outcome.fail(`HTTP ${status}`, false) : outcome.ok(performance.now() - started)));
        res.on('error', (err) => outcome.fail(err.message, false));
      });
      req.on('socket', (socket) => {
        if (counted.has(socket)) return;
        counted.add(socket);
        report.connections++;
        if (!agent) return;
        socket.on('close', (hadError: boolean) => {
          const last = lastAnswer.get(socket);
          if (report.closes.length < 10 && !stopping.value) report.closes.push(`${new Date().toISOString()} after ${last?.count ?? 0} answers (last said Connection: ${last?.connection || '-'}${hadError ? '; closed with an error' : ''})`);
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => outcome.fail(err.code ?? err.message, err.message !== 'timeout'));
    },
    close: () => {
      stopping.value = true;
      if (agent) agent.destroy();
    },
  });
}

/**
 * The same load over one HTTP/2 connection, as a browser talks to an HTTPS site: `concurrency`
 * streams at a time on it. A new connection is opened only when the server sent GOAWAY or the
 * connection is gone (`connections` counts them).
 */
export function startHttp2Load(url: string, opts: LoadOptions & { tls: { ca: string; servername: string } }): Load {
  const target = new URL(url);
  let session: http2.ClientHttp2Session | undefined;
  const current = (report: LoadReport) => {
    if (session && !session.closed && !session.destroyed) return session;
    report.connections++;
    const opened = http2.connect(target.origin, { ca: opts.tls.ca, servername: opts.tls.servername });
    // Streams still open on it finish; new ones go to a new connection.
    opened.on('goaway', () => opened.close());
    opened.on('error', () => undefined);
    session = opened;
    return opened;
  };
  const send = (report: LoadReport, outcome: Outcome, started: number, retried: boolean) => {
    let status = 0;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = current(report).request({ ':path': target.pathname + target.search, ':authority': opts.tls.servername });
    } catch (err) {
      return outcome.fail((err as NodeJS.ErrnoException).code ?? String(err), true);
    }
    stream.setTimeout(10_000, () => stream.destroy(new Error('timeout')));
    stream.on('response', (headers) => (status = Number(headers[':status'] ?? 0)));
    stream.resume();
    stream.on('end', () => (status >= 500 || status === 0 ? outcome.fail(`HTTP ${status}`, false) : outcome.ok(performance.now() - started)));
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // A stream sent as the server's GOAWAY (after keepalive_requests) crossed it on the wire is
      // refused unprocessed (RFC 9113, 8.7): browsers send it again on a new connection, and so does this.
      if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM && !retried) return send(report, outcome, started, true);
      outcome.fail(`${err.code ?? ''} ${err.message} (rst ${stream.rstCode ?? '-'})`, err.message !== 'timeout');
    });
  };
  return runLoad(opts, {
    request: (report, outcome) => send(report, outcome, performance.now(), false),
    close: () => session?.close(),
  });
}

/** The loops shared by both clients: pacing, the deadline, and the report. */
function runLoad(opts: LoadOptions, client: { request(report: LoadReport, outcome: Outcome): void; close(): void }): Load {
  const concurrency = opts.concurrency ?? 8;
  const interval = (1000 * concurrency) / opts.rps;
  const report: LoadReport = { ok: 0, failed: 0, connectionErrors: 0, connections: 0, failures: [], closes: [], latencies: [] };
  const deadline = Date.now() + (opts.maxMs ?? 300_000);
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      let settled = false;
      client.request(report, {
        ok(latencyMs) {
          if (settled) return;
          settled = true;
          report.ok++;
          report.latencies.push(latencyMs);
          resolve();
        },
        fail(why, connectionError) {
          if (settled) return;
          settled = true;
          report.failed++;
          if (connectionError) report.connectionErrors++;
          if (report.failures.length < 10) report.failures.push(`${new Date().toISOString()} ${why}`);
          resolve();
        },
      });
    });
  const loops = Array.from({ length: concurrency }, async (_, i) => {
    await new Promise((r) => setTimeout(r, (interval / concurrency) * i));
    while (running && Date.now() < deadline) {
      const next = Date.now() + interval;
      await one();
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      client.close();
      return report;
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
