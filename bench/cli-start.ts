/**
 * `plumb` start-up (issues 13 and 14): wall and CPU time of `--version`, `--help`, a command's
 * `--help`, and `plumb status` with no droplet known (it loads the command's whole work, agent
 * client and zod included, then stops at the one-line error; also with the code cache off), beside node's own start (the floor)
 * and tsc's separate files (dist/cli.js: what scripts/bundle-cli.mjs bundles). With `--lab`, on one
 * lab droplet holding one API as well: `plumb status` asking it, `plumb logs` of the API, and a
 * one-line redeploy (until its first step is printed, and whole). The cases run interleaved, round
 * after round, so that a change in the machine's load hits them all alike. With `--against
 * OTHER/dist/plumb.js` (a copy of another build's packages/controller, package.json beside dist/),
 * each plumb case but the redeploy also runs with that build, in turns with this one: before and
 * after a change, in the same run. Run after `npm run build`:
 * node bench/dist/bench/cli-start.js [ROUNDS] [--lab] [--against OTHER/dist/plumb.js]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PLUMB_CLI } from '../test/e2e/plumb.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { startLab, type Lab } from '../test/lab/lab.js';
import { benchDroplet } from './bench-droplet.js';

const withLab = process.argv.includes('--lab');
const againstAt = process.argv.indexOf('--against');
const against = againstAt > 0 ? process.argv[againstAt + 1] : undefined;
if (againstAt > 0 && !against?.endsWith('plumb.js')) throw new Error('--against wants the other build\'s dist/plumb.js');
const ROUNDS = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? (withLab ? 11 : 21));
// The child's own CPU (user + sys, all its threads), printed as it exits: a preload, the same for every case.
const cpuAtExit = `data:text/javascript,${encodeURIComponent("process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`\\nCPU ${(u.user + u.system) / 1000}\\n`); });")}`;
const UNBUNDLED = path.join(path.dirname(PLUMB_CLI), 'cli.js');
/** A step line of plumb's progress on a pipe: `[   0.3s] step`. */
const STEP = /^\[\s*[\d.]+s\] /m;

interface Case {
  what: string;
  args: string[];
  /** The environment's home (config dir); the empty one unless given. */
  home?: string;
  /** Run before each round's run of this case (a redeploy changes a line first). */
  before?: (round: number) => Promise<void>;
  /** Also time until the first progress step shows on stderr. */
  firstStep?: boolean;
  env?: Record<string, string>;
}
interface Timed {
  wall: number;
  cpu: number;
  firstStep: number;
}

// An empty home: no droplet known, whatever this machine's user has set up.
const emptyHome = mkdtempSync(path.join(os.tmpdir(), 'plumb-bench-home-'));
const cases: Case[] = [
  { what: 'node -e 0 (the floor)', args: ['-e', '0'] },
  { what: 'plumb --version', args: [PLUMB_CLI, '--version'] },
  { what: 'plumb --help', args: [PLUMB_CLI, '--help'] },
  { what: 'plumb deploy --help', args: [PLUMB_CLI, 'deploy', '--help'] },
  { what: 'plumb status, no droplet known', args: [PLUMB_CLI, 'status'] },
  { what: 'plumb status, no droplet known, code cache off (PLUMB_CODE_CACHE=0)', args: [PLUMB_CLI, 'status'], env: { PLUMB_CODE_CACHE: '0' } },
  { what: 'unbundled: node dist/cli.js --help', args: [UNBUNDLED, '--help'] },
  { what: 'unbundled: node dist/cli.js status, no droplet known', args: [UNBUNDLED, 'status'] },
];
let env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: emptyHome, XDG_CONFIG_HOME: emptyHome };

function timed(c: Case): Promise<Timed> {
  const started = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - started) / 1e6;
  const child = spawn(process.execPath, ['--import', cpuAtExit, ...c.args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, XDG_CONFIG_HOME: c.home ?? emptyHome, ...c.env } });
  let stderr = '';
  let firstStep = NaN;
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    if (Number.isNaN(firstStep) && STEP.test(stderr)) firstStep = since();
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const wall = since();
      // The floor exits 0 by definition; a plumb case that fails measures the wrong thing.
      if (code !== 0 && c.home !== undefined) reject(new Error(`${c.what} exited ${code}: ${stderr}`));
      else resolve({ wall, cpu: Number(/CPU ([\d.]+)/.exec(stderr)?.[1] ?? NaN), firstStep });
    });
  });
}

let lab: Lab | undefined;
try {
  if (withLab) {
    lab = await startLab();
    const bench = await benchDroplet(lab, 'clistart');
    env = { ...bench.user.env, PATH: process.env.PATH, HOME: emptyHome };
    const dir = await apiDir(sumApi('v0'));
    await bench.run(['deploy', dir, '--name', 'hello']);
    const home = bench.user.configHome;
    cases.push(
      { what: 'plumb status --json, one droplet, one API', args: [PLUMB_CLI, 'status', '--json'], home },
      { what: 'plumb logs hello -n 10', args: [PLUMB_CLI, 'logs', 'hello', '-n', '10'], home },
      {
        what: 'plumb deploy, a line changed (whole; first step in its own column)',
        args: [PLUMB_CLI, 'deploy', dir, '--name', 'hello'],
        home,
        before: (round) => writeFile(path.join(dir, 'plumber.R'), sumApi(`v${round + 1}`)['plumber.R']),
        firstStep: true,
      },
    );
  }

  if (against !== undefined) {
    // Beside each plumb case, the same with the other build (the redeploy aside: its change is made once a round).
    for (let i = cases.length - 1; i > 0; i--) {
      const c = cases[i]!;
      if (c.args[0] === PLUMB_CLI && !c.before) cases.splice(i + 1, 0, { ...c, what: `${c.what} [against]`, args: [against, ...c.args.slice(1)] });
    }
  }
  // Once each before the rounds: the code cache (under the empty home) is written by a first run.
  for (const c of cases) await timed(c);
  const runs = cases.map((): Timed[] => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, c] of cases.entries()) {
      await c.before?.(round);
      runs[i]?.push(await timed(c));
    }
  }
  /** A difference with its sign: one round on a noisy machine can put a case under the floor. */
  const over = (ms: number) => `${ms < 0 ? '' : '+'}${ms.toFixed(0)}`;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
  const of = (i: number, key: keyof Timed) => median((runs[i] ?? []).map((r) => r[key]));
  const [floorWall, floorCpu] = [of(0, 'wall'), of(0, 'cpu')];
  console.log(`| what (median of ${ROUNDS}) | wall ms | over node | x node | CPU ms | over node | first step ms |`);
  console.log('|---|---|---|---|---|---|---|');
  cases.forEach(({ what, firstStep }, i) => {
    const [w, c] = [of(i, 'wall'), of(i, 'cpu')];
    const rest = i === 0 ? ['', '', c.toFixed(0), ''] : [over(w - floorWall), (w / floorWall).toFixed(2), c.toFixed(0), over(c - floorCpu)];
    console.log(`| ${what} | ${w.toFixed(0)} | ${rest.join(' | ')} | ${firstStep ? of(i, 'firstStep').toFixed(0) : ''} |`);
  });
  if (against !== undefined) {
    console.log(`\n[against]: ${against}. This build over it, same case (ratios of medians):\n`);
    console.log('| what | wall, this / against | CPU, this / against | CPU ms, this - against |');
    console.log('|---|---|---|---|');
    cases.forEach(({ what }, i) => {
      if (cases[i + 1]?.what !== `${what} [against]`) return;
      const ratio = (key: keyof Timed) => (of(i, key) / of(i + 1, key)).toFixed(2);
      console.log(`| ${what} | ${ratio('wall')} | ${ratio('cpu')} | ${over(of(i, 'cpu') - of(i + 1, 'cpu'))} |`);
    });
  }
  console.log(`\nmachine: ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end; node ${process.version}`);
} finally {
  await lab?.stop();
  rmSync(emptyHome, { recursive: true, force: true });
}
