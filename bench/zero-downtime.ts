/**
 * Benchmarks for issue 7, on a lab droplet (s-2vcpu-4gb): prints tables, asserts nothing.
 *   1. failed requests during 20 redeploys under load: plumb's rollout vs restarting in place
 *      (what plumber's do_deploy_api did: new files, `systemctl restart` of the one R process);
 *   2. latency during a deploy vs steady state;
 *   3. throughput of a CPU-bound endpoint with 1 vs 2 workers.
 * Run: npm run bench   (root; about 6 minutes)
 */
import http from 'node:http';
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { percentile, startLoad, type LoadReport } from '../test/e2e/load.js';
import { benchDroplet } from './bench-droplet.js';

const RPS = 200;
const REDEPLOYS = 20;
const CPU_BOUND = `
#* Burn CPU for a while (a loop in R)
#* @get /burn
function() {
  s <- 0
  for (i in 1:300000) s <- s + sqrt(i)
  s
}
`;

const lab = await startLab();
try {
  const { run, id: dropletId, address } = await benchDroplet(lab);
  await run(['deploy', await apiDir(sumApi('v0', CPU_BOUND)), '--name', 'sum']);

  const measure = async (work: () => Promise<void>): Promise<LoadReport & { seconds: number }> => {
    const load = startLoad(`http://${address}/sum/version`, { rps: RPS });
    const started = Date.now();
    await work();
    return { ...(await load.stop()), seconds: (Date.now() - started) / 1000 };
  };

  const steady = await measure(() => new Promise((r) => setTimeout(r, 15_000)));
  const rollouts = await measure(async () => {
    for (let i = 1; i <= REDEPLOYS; i++) await run(['deploy', await apiDir(sumApi(`v${i}`, CPU_BOUND)), '--name', 'sum']);
  });
  const inPlace = await measure(async () => {
    // `plumb restart` is a rollout now; the seed's way is systemd's restart of the one R process.
    for (let i = 1; i <= REDEPLOYS; i++) await lab.droplet(dropletId).exec(['sh', '-c', "systemctl restart 'plumber-sum@*' && until curl -sf -o /dev/null 127.0.0.1/sum/version; do sleep 0.05; done"]);
  });

  const row = (name: string, r: LoadReport & { seconds: number }) =>
    `| ${name} | ${r.ok + r.failed} | ${r.failed} | ${((100 * r.failed) / Math.max(1, r.ok + r.failed)).toFixed(2)} % | ${percentile(r.latencies, 50).toFixed(1)} | ${percentile(r.latencies, 99).toFixed(1)} | ${r.seconds.toFixed(0)} |`;
  console.log(`\n### Requests during ${REDEPLOYS} redeploys at ${RPS} req/s (fresh connection per request)\n`);
  console.log('| what | requests | failed | failed share | p50 ms | p99 ms | seconds |');
  console.log('|---|---|---|---|---|---|---|');
  console.log(row('steady state, no deploy', steady));
  console.log(row(`plumb deploy x${REDEPLOYS} (new workers, health gate, switch, drain)`, rollouts));
  console.log(row(`restart in place x${REDEPLOYS} (the seed's way)`, inPlace));

  const throughput = async (workers: number) => {
    await run(['scale', 'sum', String(workers)]);
    const seconds = 15;
    const deadline = Date.now() + seconds * 1000;
    let done = 0;
    const one = () => new Promise<void>((resolve) => http.get(`http://${address}/sum/burn`, { agent: false }, (res) => res.resume().on('end', () => (done++, resolve()))).on('error', () => resolve()));
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (Date.now() < deadline) await one();
    }));
    return done / seconds;
  };
  const one = await throughput(1);
  const two = await throughput(2);
  console.log('\n### CPU-bound endpoint on a 2-vCPU droplet (8 concurrent clients, 15 s)\n');
  console.log('| workers | requests/s | vs 1 worker |');
  console.log('|---|---|---|');
  console.log(`| 1 | ${one.toFixed(1)} | 1.00x |`);
  console.log(`| 2 | ${two.toFixed(1)} | ${(two / one).toFixed(2)}x |`);
} finally {
  await lab.stop();
}
