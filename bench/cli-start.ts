/**
 * `plumb` start-up (issues 13 and 14): wall and CPU time of `--version`, `--help`, a command's
 * `--help`, and `plumb status` with no droplet known (it loads the command's whole work, agent
 * client and zod included, then stops at the one-line error), beside node's own start (the floor)
 * and tsc's separate files (dist/cli.js: what scripts/bundle-cli.mjs bundles). The cases run interleaved, round after round, so that a change
 * in the machine's load hits them all alike. Needs no lab. Run after `npm run build`:
 * node bench/dist/bench/cli-start.js [ROUNDS]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PLUMB_CLI } from '../test/e2e/plumb.js';

const ROUNDS = Number(process.argv[2] ?? 21);
// The child's own CPU (user + sys, all its threads), printed as it exits: a preload, the same for every case.
const cpuAtExit = `data:text/javascript,${encodeURIComponent("process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`\\nCPU ${(u.user + u.system) / 1000}\\n`); });")}`;
const UNBUNDLED = path.join(path.dirname(PLUMB_CLI), 'cli.js');
const cases: [string, string[]][] = [
  ['node -e 0 (the floor)', ['-e', '0']],
  ['plumb --version', [PLUMB_CLI, '--version']],
  ['plumb --help', [PLUMB_CLI, '--help']],
  ['plumb deploy --help', [PLUMB_CLI, 'deploy', '--help']],
  ['plumb status, no droplet known', [PLUMB_CLI, 'status']],
  ['unbundled: node dist/cli.js --help', [UNBUNDLED, '--help']],
  ['unbundled: node dist/cli.js status, no droplet known', [UNBUNDLED, 'status']],
];
// An empty home: no droplet known, whatever this machine's user has set up.
const home = mkdtempSync(path.join(os.tmpdir(), 'plumb-bench-home-'));
const env = { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: home };

const wall = cases.map((): number[] => []);
const cpu = cases.map((): number[] => []);
for (let round = 0; round < ROUNDS; round++) {
  cases.forEach(([, args], i) => {
    const started = process.hrtime.bigint();
    const r = spawnSync(process.execPath, ['--import', cpuAtExit, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], env });
    wall[i]?.push(Number(process.hrtime.bigint() - started) / 1e6);
    cpu[i]?.push(Number(/CPU ([\d.]+)/.exec(r.stderr)?.[1] ?? NaN));
  });
}
rmSync(home, { recursive: true, force: true });
/** A difference with its sign: one round on a noisy machine can put a case under the floor. */
const over = (ms: number) => `${ms < 0 ? '' : '+'}${ms.toFixed(0)}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
const [floorWall, floorCpu] = [median(wall[0] ?? []), median(cpu[0] ?? [])];
console.log(`| what (median of ${ROUNDS}) | wall ms | over node | CPU ms | over node |`);
console.log('|---|---|---|---|---|');
cases.forEach(([what], i) => {
  const [w, c] = [median(wall[i] ?? []), median(cpu[i] ?? [])];
  console.log(`| ${what} | ${w.toFixed(0)} | ${i === 0 ? '' : over(w - floorWall)} | ${c.toFixed(0)} | ${i === 0 ? '' : over(c - floorCpu)} |`);
});
console.log(`\nmachine: ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end; node ${process.version}`);
