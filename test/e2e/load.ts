import http from 'node:http';

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
  /** Request latencies in ms, for the benchmarks. */
  latencies: number[];
}

export interface Load {
  stop(): Promise<LoadReport>;
}

/**
 * A steady, bounded load on one URL: `rps` requests per second from `concurrency` loops. Each
 * request on a fresh connection (so nothing is hidden by a kept-alive socket), or with
 * `keepAlive` over `concurrency` kept-alive connections, as browsers and HTTP client pools do
 * (where a server closing an idle connection under a request shows). A failure is a connection
 * error, a timeout or a 5xx. It stops by itself after `maxMs` whatever happens.
 */
export function startLoad(url: string, opts: { rps: number; concurrency?: number; maxMs?: number; keepAlive?: boolean }): Load {
  const concurrency = opts.concurrency ?? 8;
  const interval = (1000 * concurrency) / opts.rps;
  const report: LoadReport = { ok: 0, failed: 0, connectionErrors: 0, connections: 0, failures: [], latencies: [] };
  const agent = opts.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: concurrency }) : false;
  const counted = new WeakSet<object>();
  const deadline = Date.now() + (opts.maxMs ?? 300_000);
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const fail = (why: string) => {
        report.failed++;
        if (report.failures.length < 10) report.failures.push(`${new Date().toISOString()} ${why}`);
        resolve();
      };
      const req = http.get(url, { agent, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          if ((res.statusCode ?? 0) >= 500) return fail(`HTTP ${res.statusCode}`);
          report.ok++;
          report.latencies.push(performance.now() - started);
          resolve();
        });
        res.on('error', (err) => fail(err.message));
      });
      req.on('socket', (socket) => {
        if (counted.has(socket)) return;
        counted.add(socket);
        report.connections++;
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.message !== 'timeout') report.connectionErrors++;
        fail(err.code ?? err.message);
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
      if (agent) agent.destroy();
      return report;
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
