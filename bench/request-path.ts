/**
 * Benchmarks for issue 11 (the request path), on a lab droplet (s-2vcpu-4gb): prints tables, asserts nothing.
 *   1. latency of a one-line endpoint, from inside the droplet, p50/p99 with 1 and 16 concurrent
 *      clients: straight to the R worker, through plumb's nginx (front port + nftables map, no
 *      upstream keepalive), and through nginx with an upstream keepalive to the worker (before);
 *      with the CPU time each path costs per request (droplet's processes, and the client's), which
 *      the machine's other load does not change the way it changes latency;
 *   2. failed requests and closed connections during 20 redeploys at a fixed rate, for clients
 *      opening a fresh connection per request and for 8 keep-alive connections; p99 vs steady;
 *   3. a 20 s request started before a redeploy: does it complete?
 * Run: npm run bench   (root; about 5 minutes); `--latency-only`: part 1 alone; `--pin`: client and R on CPUs of their own.
 */
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { httpGet } from '../test/e2e/helpers.js';
import { percentile, startLoad, type LoadReport } from '../test/e2e/load.js';
import { benchDroplet } from './bench-droplet.js';

const REDEPLOYS = 20;
/** `--requests N`: GETs per client per round (300 unless given; more settles the 1-client p99). */
const REQUESTS_PER_CLIENT = Number(process.argv[process.argv.indexOf('--requests') + 1] ?? '') || 300;
const ROUNDS = 2;
/**
 * Settings tried on the proxied path (issue 11: at most 0.5 ms added), each a server of its own in
 * front of the same front port: [row name, upstream block lines, location lines]. The earlier rows
 * (proxy_buffering off, access_log off or buffered, tcp_nodelay off) made no difference beyond the
 * noise and are in docs/benchmarks.md; what is left is whether nginx may keep its upstream
 * connections (R spared an accept and a close per request) once the Nagle stall is gone.
 */
const VARIANTS: Array<[string, string, string]> = [
  ['minimal proxy location', '', ''],
  ['upstream keepalive 16 to the front port, keepalive_time 1s', 'keepalive 16; keepalive_time 1s;', 'proxy_set_header Connection "";'],
];
/**
 * The loopback routes in quick-ACK mode (`ip route change ... quickack 1`): the receiver ACKs at
 * once instead of delaying, so httpuv's second write is not held by Nagle on a reused connection.
 * Per network namespace: in the lab, the droplet's own.
 */
const QUICKACK = (on: 0 | 1) =>
  `ip route show table local | grep '^local 127\\.' | while read -r route; do ip route change $route table local quickack ${on}; done`;
const LATENCY_ONLY = process.argv.includes('--latency-only');
/**
 * `--pin`: the client on CPU 0 and the R worker on CPU 1 (nginx where the scheduler puts it), as
 * when the clients are other machines: without it the 16 clients take the droplet's CPUs from R
 * and nginx, and what nginx costs is multiplied by the queue's depth.
 */
const PIN_NGINX = process.argv.includes('--pin-nginx');
const PIN = PIN_NGINX || process.argv.includes('--pin');
/**
 * `--pin-nginx` (implies --pin): nginx too on CPU 0, beside the client, so R's CPU is R's alone, as
 * on a droplet whose clients are other machines and whose second CPU nginx has to itself. The
 * master is pinned as well, so the workers each reload forks keep the pin.
 */
const PIN_NGINX_CMD = 'for p in $(pgrep -x nginx); do taskset -a -p -c 0 "$p" >/dev/null; done';
const SLOW = '\n#* @get /slow\nfunction(s = 20) {\n  Sys.sleep(as.numeric(s))\n  "slept"\n}\n';

/** A client run inside the droplet (its node): `clients` loops of `n` GETs, each on a fresh connection; prints latencies in ms. */
const CLIENT = `
const http = require('node:http');
const [port, path, clients, n] = process.argv.slice(1);
const one = () => new Promise((resolve, reject) => {
  const t = process.hrtime.bigint();
  http.get({ host: '127.0.0.1', port: Number(port), path, agent: false }, (res) => {
    res.resume();
    res.on('end', () => resolve(Number(process.hrtime.bigint() - t) / 1e6));
  }).on('error', reject);
});
(async () => {
  const all = [];
  await Promise.all(Array.from({ length: Number(clients) }, async () => {
    for (let i = 0; i < Number(n); i++) all.push(await one());
  }));
  const cpu = process.cpuUsage();
  console.log(JSON.stringify({ latencies: all, clientCpuMs: (cpu.user + cpu.system) / 1000 }));
})();
`;

/**
 * CPU time (ms) used so far by the droplet's nginx and R processes (its own pid namespace), from
 * /proc/PID/stat utime + stime at 100 ticks a second. Before and after a run, it gives what serving
 * the run cost, whatever else loads the machine; the agent and journald are left out, since their
 * share follows the run's length, not its requests.
 */
const SERVER_CPU = `
const fs = require('node:fs');
let ticks = 0;
for (const pid of fs.readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p) && Number(p) !== process.pid)) {
  try {
    const stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (comm === 'nginx' || comm === 'R') ticks += Number(fields[11]) + Number(fields[12]);
  } catch {}
}
console.log(ticks * 10);
`;

const lab = await startLab();
try {
  const { run, id: dropletId, address } = await benchDroplet(lab);
  const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
  const deploy = async (version: string) => run(['deploy', await apiDir(sumApi(version, SLOW)), '--name', 'sum']);
  await deploy('v0');

  // 1. Latency from inside the droplet.
  const status = JSON.parse((await run(['status', '--json'])).stdout) as Array<{ status: { apis: Array<{ workers: Array<{ port: number }> }> } }>;
  const workerPort = status[0]?.status.apis[0]?.workers[0]?.port ?? 0;
  const clientCpu = PIN ? ['taskset', '-c', '0'] : [];
  if (PIN) await onDroplet(['sh', '-c', `taskset -a -p -c 1 "$(systemctl show -P MainPID plumber-sum@${workerPort}.service)"`]);
  const frontPort = Number(/server 127\.0\.0\.1:(\d+)/.exec(await onDroplet(['cat', '/etc/nginx/conf.d/plumb.conf']))?.[1] ?? 0);
  // The path before issue 11, beside plumb's: nginx with an upstream keepalive straight to the worker.
  const beforeServer = `upstream bench_keepalive { server 127.0.0.1:${workerPort}; keepalive 16; }\nserver { listen 127.0.0.1:8081; location / { proxy_pass http://bench_keepalive/; proxy_http_version 1.1; proxy_set_header Connection ""; } }\n`;
  // nginx settings that might cut what nginx adds, each a server of its own in front of the same front port.
  const variantServers = VARIANTS.map(([, upstream, location], i) => `upstream bench_v${i} { server 127.0.0.1:${frontPort}; ${upstream} }\nserver { listen 127.0.0.1:${8090 + i}; location / { proxy_pass http://bench_v${i}/; proxy_http_version 1.1; ${location} } }`).join('\n');
  await onDroplet(['sh', '-c', `printf '%s\\n' '${beforeServer}${variantServers}' > /etc/nginx/conf.d/zz-bench.conf && nginx -t -q && systemctl reload nginx && sleep 1`]);
  if (PIN_NGINX) await onDroplet(['sh', '-c', PIN_NGINX_CMD]);
  interface Run { latencies: number[]; clientCpuMs: number; serverCpuMs: number }
  const serverCpuMs = async () => Number(await onDroplet(['node', '-e', SERVER_CPU]));
  const latencies = async (port: number, path: string, clients: number): Promise<Run> => {
    await onDroplet([...clientCpu, 'node', '-e', CLIENT, String(port), path, '1', '20']);
    const before = await serverCpuMs();
    const run = JSON.parse(await onDroplet([...clientCpu, 'node', '-e', CLIENT, String(port), path, String(clients), String(REQUESTS_PER_CLIENT)])) as Omit<Run, 'serverCpuMs'>;
    return { ...run, serverCpuMs: (await serverCpuMs()) - before };
  };
  const paths: Array<[string, number, string]> = [
    ['straight to the R worker', workerPort, '/version'],
    ['plumb: nginx -> front port -> worker (no upstream keepalive)', 80, '/sum/version'],
    ...VARIANTS.map(([name], i): [string, number, string] => [`variant: ${name}`, 8090 + i, '/version']),
    ['before: nginx with upstream keepalive 16 -> worker', 8081, '/version'],
  ];
  /** Every path measured ROUNDS times, the rounds interleaved, so a change of the machine's load hits every row alike. */
  const measureAll = async (clients: number, rows: Array<[string, number, string]>): Promise<Run[]> => {
    const pooled = rows.map((): Run => ({ latencies: [], clientCpuMs: 0, serverCpuMs: 0 }));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, [, port, path]] of rows.entries()) {
        const run = await latencies(port, path, clients);
        const into = pooled[i]!;
        into.latencies.push(...run.latencies);
        into.clientCpuMs += run.clientCpuMs;
        into.serverCpuMs += run.serverCpuMs;
      }
    }
    return pooled;
  };
  /** Latency as percentiles beside direct, and CPU per request: what the machine pays for each path whatever its load. */
  const table = (clients: number, rows: Array<[string, number, string]>, values: Run[]) => {
    const direct = values[0]?.latencies ?? [];
    const [d50, d99] = [percentile(direct, 50), percentile(direct, 99)];
    const perRequest = (run: Run | undefined) => (run ? run.serverCpuMs / run.latencies.length : 0);
    for (const [i, [name]] of rows.entries()) {
      const run = values[i];
      const [p50, p99] = [percentile(run?.latencies ?? [], 50), percentile(run?.latencies ?? [], 99)];
      const cpu = perRequest(run);
      const client = run ? run.clientCpuMs / run.latencies.length : 0;
      console.log(`| ${clients} | ${name} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${(p50 / d50).toFixed(2)}x | ${(p99 / d99).toFixed(2)}x | ${(p50 - d50).toFixed(2)} | ${(p99 - d99).toFixed(2)} | ${cpu.toFixed(3)} | ${(cpu - perRequest(values[0])).toFixed(3)} | ${client.toFixed(3)} |`);
    }
  };
  console.log(`\n### Latency of GET /version, from inside the droplet, fresh connection per request (${REQUESTS_PER_CLIENT} requests per client, ${ROUNDS} interleaved rounds)\n`);
  console.log(`load average before: ${await onDroplet(['cat', '/proc/loadavg'])}${PIN ? `; pinned: client${PIN_NGINX ? ' and nginx' : ''} on CPU 0, R worker on CPU 1` : ''}`);
  console.log('| clients | path | p50 ms | p99 ms | p50 vs direct | p99 vs direct | p50 added ms | p99 added ms | nginx+R CPU ms/request | added CPU ms/request | client CPU ms/request |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const clients of [1, 16]) table(clients, paths, await measureAll(clients, paths));
  // Global settings, each measured on its own against direct, the last kept for the next.
  const rowsOf = (names: string[], suffix: string) =>
    paths.filter(([name]) => names.some((n) => name.includes(n))).map(([name, port, path]): [string, number, string] => [name === paths[0]?.[0] ? name : `${name}, ${suffix}`, port, path]);
  const global = ['straight to the R worker', 'plumb:', 'keepalive_time', 'before:'];
  console.log(`loopback routes: ${(await onDroplet(['sh', '-c', 'ip route show table local | grep "^local 127"'])).trim().replace(/\n/g, '; ')}`);
  await onDroplet(['sh', '-c', QUICKACK(1)]);
  const quick = rowsOf(global, 'quickack on lo');
  for (const clients of [1, 16]) table(clients, quick, await measureAll(clients, quick));
  // One nginx worker process instead of one per CPU (Debian's `auto`).
  await onDroplet(['sh', '-c', "sed -i 's/^worker_processes auto;/worker_processes 1;/' /etc/nginx/nginx.conf && nginx -t -q && systemctl reload nginx && sleep 2"]);
  const single = rowsOf(global.slice(0, 3), 'quickack on lo, worker_processes 1');
  for (const clients of [1, 16]) table(clients, single, await measureAll(clients, single));
  await onDroplet(['sh', '-c', QUICKACK(0)]);
  const singleOnly = rowsOf(global.slice(0, 2), 'worker_processes 1');
  for (const clients of [1, 16]) table(clients, singleOnly, await measureAll(clients, singleOnly));
  await onDroplet(['sh', '-c', "sed -i 's/^worker_processes 1;/worker_processes auto;/' /etc/nginx/nginx.conf && nginx -t -q && systemctl reload nginx"]);
  console.log(`load average after: ${await onDroplet(['cat', '/proc/loadavg'])}`);
  if (!LATENCY_ONLY) {
    // A reload closes idle keep-alive connections; let the old nginx workers finish before the load starts.
    await onDroplet(['sh', '-c', 'rm /etc/nginx/conf.d/zz-bench.conf && systemctl reload nginx && sleep 3']);

    // 2. Redeploys under a fixed rate, both kinds of client at once.
    const loads = () => [
      startLoad(`http://${address}/sum/version`, { rps: 100, concurrency: 4 }),
      startLoad(`http://${address}/sum/version`, { rps: 100, concurrency: 8, keepAlive: true }),
    ];
    const measure = async (work: () => Promise<void>): Promise<{ fresh: LoadReport; kept: LoadReport; seconds: number }> => {
      const [fresh, kept] = loads() as [ReturnType<typeof startLoad>, ReturnType<typeof startLoad>];
      const started = Date.now();
      await work();
      return { fresh: await fresh.stop(), kept: await kept.stop(), seconds: (Date.now() - started) / 1000 };
    };
    const steady = await measure(() => new Promise((r) => setTimeout(r, 15_000)));
    const redeploys = await measure(async () => {
      for (let i = 1; i <= REDEPLOYS; i++) await deploy(`v${i}`);
    });
    const row = (what: string, client: string, r: LoadReport, seconds: number, steadyP99: number) =>
      `| ${what} | ${client} | ${r.ok + r.failed} | ${r.failed} | ${r.connectionErrors} | ${r.connections} | ${percentile(r.latencies, 50).toFixed(1)} | ${percentile(r.latencies, 99).toFixed(1)} | ${(percentile(r.latencies, 99) / steadyP99).toFixed(2)}x | ${seconds.toFixed(0)} |`;
    console.log(`\n### ${REDEPLOYS} redeploys at a fixed rate: 100 req/s on fresh connections and 100 req/s over 8 keep-alive connections, at once\n`);
    console.log('| what | client | requests | failed | connection errors | connections opened | p50 ms | p99 ms | p99 vs steady | seconds |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    const freshP99 = percentile(steady.fresh.latencies, 99);
    const keptP99 = percentile(steady.kept.latencies, 99);
    console.log(row('steady state, no deploy', 'fresh connection per request', steady.fresh, steady.seconds, freshP99));
    console.log(row('steady state, no deploy', '8 keep-alive connections', steady.kept, steady.seconds, keptP99));
    console.log(row(`plumb deploy x${REDEPLOYS}`, 'fresh connection per request', redeploys.fresh, redeploys.seconds, freshP99));
    console.log(row(`plumb deploy x${REDEPLOYS}`, '8 keep-alive connections', redeploys.kept, redeploys.seconds, keptP99));

    // 3. A long request across a redeploy.
    const started = Date.now();
    const slow = httpGet(`http://${address}/sum/slow?s=20`, 60_000).then((a) => `HTTP ${a.status} ${a.body}`, (err: Error) => `failed: ${err.message}`);
    await new Promise((r) => setTimeout(r, 1000));
    await deploy('long');
    const deployed = (Date.now() - started) / 1000;
    const outcome = await slow;
    console.log('\n### A 20 s request started 1 s before a redeploy (default drain timeout, 30 s)\n');
    console.log('| deploy returned after | request ended after | answer |');
    console.log('|---|---|---|');
    console.log(`| ${deployed.toFixed(1)} s | ${((Date.now() - started) / 1000).toFixed(1)} s | ${outcome} |`);
  }
} finally {
  await lab.stop();
}
