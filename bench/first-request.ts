import { REQUEST_WARM_UP_R, RUNNER_R, SPARE_READY } from '@plumb/agent/render/runner';

/**
 * The first requests a worker serves (issue 14): R listening → its first answer (a 404 on `/`, as
 * the health gate asks) → the first 200 after it, for a cold worker and for a warm spare after its
 * handover, with the runner as it is and without its request warm-up (REQUEST_WARM_UP_R), in
 * turns on one droplet. Each run is one process of the droplet's node (FIRST_REQUEST_PROBE): it
 * starts the runner with Rscript itself, as root, with the unit's two variables (no systemd, no
 * sandbox: the same R, the same code), hands the spare its release over its fifo as the agent
 * does, and times everything on its own clock.
 */

/** What one run measured, ms. */
export interface FirstRequestRun {
  /** Cold: from Rscript's start; spare: from the handover (the fifo written) until R accepted a connection. */
  listenMs: number;
  /** R accepted the connection → the whole first answer (404 on `/`). */
  firstMs: number;
  /** The start or handover → the first answer: what the health gate waits for (it asks every 20 ms). */
  gateMs: number;
  /** The first 200 (a JSON endpoint with a query string), asked right after: connected → answered. */
  first200Ms: number;
  /** The same request again: a warm request, the floor. */
  warm200Ms: number;
  statuses: number[];
  /** R's stderr: what the worker's journal would hold. */
  stderr: string;
}

/** Runs on the droplet: `node -e FIRST_REQUEST_PROBE CONFIG` prints one FirstRequestRun as JSON. */
export const FIRST_REQUEST_PROBE = `
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const cfg = JSON.parse(process.argv[process.argv.length - 1]);
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// One request on a connection of its own, as the health gate and nginx open one each; undefined when refused.
const ask = (path) => new Promise((resolve) => {
  let connected;
  let data = '';
  const s = net.connect({ host: '127.0.0.1', port: cfg.port });
  s.setEncoding('latin1');
  s.on('connect', () => { connected = now(); s.write('GET ' + path + ' HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n'); });
  s.on('data', (d) => { data += d; });
  s.on('end', () => resolve({ connected, answered: now(), status: Number((/^HTTP\\/1\\.1 (\\d+)/.exec(data) || [])[1]) }));
  s.on('error', () => resolve(undefined));
});
(async () => {
  const env = { PATH: '/usr/bin:/bin', PLUMB_PORT: String(cfg.port) };
  if (cfg.spare) {
    fs.rmSync(cfg.fifo, { force: true });
    execFileSync('mkfifo', ['-m', '0600', cfg.fifo]);
    env.PLUMB_SPARE = cfg.fifo;
  } else env.PLUMB_RELEASE_DIR = cfg.release;
  let stderr = '';
  let exited = false;
  const started = now();
  const r = spawn('/usr/bin/Rscript', ['--no-save', '--no-restore', cfg.runner], { env, cwd: '/', stdio: ['ignore', 'ignore', 'pipe'] });
  r.stderr.setEncoding('utf8');
  r.stderr.on('data', (d) => { stderr += d; });
  const ended = new Promise((resolve) => r.on('exit', () => { exited = true; resolve(); }));
  const fail = (why) => { r.kill('SIGKILL'); console.error(why + '\\n' + stderr); process.exit(1); };
  let t0 = started;
  if (cfg.spare) {
    while (!stderr.includes(cfg.ready)) {
      if (exited || now() - started > 120000) fail('the spare did not become ready');
      await sleep(10);
    }
    // As a spare waits between deploys: idle, its warm-up's clean-up done.
    await sleep(cfg.settleMs);
    t0 = now();
    fs.writeFileSync(cfg.fifo, 'PLUMB_RELEASE_DIR ' + Buffer.from(cfg.release).toString('hex') + '\\n');
  }
  let first;
  while (!(first = await ask('/'))) {
    if (exited || now() - t0 > 120000) fail('R did not answer');
    await sleep(1);
  }
  const ok = await ask(cfg.path200);
  const again = await ask(cfg.path200);
  r.kill('SIGTERM');
  await ended;
  fs.rmSync(cfg.fifo, { force: true });
  if (!ok || !again) fail('R stopped answering');
  console.log(JSON.stringify({
    listenMs: first.connected - t0, firstMs: first.answered - first.connected, gateMs: first.answered - t0,
    first200Ms: ok.answered - ok.connected, warm200Ms: again.answered - again.connected,
    statuses: [first.status, ok.status, again.status], stderr,
  }));
})();
`;

/** The runner as main had it before the request warm-up: RUNNER_R without REQUEST_WARM_UP_R. */
export function runnerWithoutRequestWarmUp(): string {
  if (!RUNNER_R.includes(REQUEST_WARM_UP_R)) throw new Error('RUNNER_R no longer holds REQUEST_WARM_UP_R: bench/first-request.ts cannot take it out');
  return RUNNER_R.replace(REQUEST_WARM_UP_R, '');
}

export type Arm = 'cold' | 'spare, no request warm-up (before)' | 'spare, request warm-up (after)';

/**
 * `reps` runs of each arm in turns, on the droplet `onDroplet` runs commands in, of the API whose
 * release directory is `release`, its first 200 being `path200`. Port 8990 is outside the worker
 * and front port ranges: nothing of plumb's is there.
 */
export async function firstRequests(
  onDroplet: (argv: string[], opts?: { input?: string }) => Promise<string>,
  release: string,
  path200: string,
  reps: number,
): Promise<Record<Arm, FirstRequestRun[]>> {
  const dir = '/run/plumb-bench-first';
  await onDroplet(['mkdir', '-p', '-m', '0700', dir]);
  await onDroplet(['sh', '-c', `cat > ${dir}/after.R`], { input: RUNNER_R });
  await onDroplet(['sh', '-c', `cat > ${dir}/before.R`], { input: runnerWithoutRequestWarmUp() });
  const arms: Array<[Arm, { spare: boolean; runner: string }]> = [
    ['cold', { spare: false, runner: `${dir}/after.R` }],
    ['spare, no request warm-up (before)', { spare: true, runner: `${dir}/before.R` }],
    ['spare, request warm-up (after)', { spare: true, runner: `${dir}/after.R` }],
  ];
  const runs = Object.fromEntries(arms.map(([arm]) => [arm, [] as FirstRequestRun[]])) as Record<Arm, FirstRequestRun[]>;
  try {
    for (let i = 0; i < reps; i++) {
      for (const [arm, how] of arms) {
        const config = { ...how, port: 8990, release, path200, fifo: `${dir}/spare.fifo`, ready: SPARE_READY, settleMs: 1000 };
        runs[arm].push(JSON.parse(await onDroplet(['node', '-e', FIRST_REQUEST_PROBE, JSON.stringify(config)])) as FirstRequestRun);
      }
    }
  } finally {
    await onDroplet(['rm', '-rf', dir]);
  }
  return runs;
}
