/**
 * Benchmark for issue 15: `plumb deploy --group G --parallel N` to N droplets against the same
 * deploy to one droplet (goal: at most 1.5x), in the lab; prints a table, asserts nothing.
 * The droplets are made at once (`provision --group --count N`); every deploy is a new version
 * of a one-file API (the bundle packed once, then each droplet's own zero-downtime rollout), and
 * the time is the command's, until it returns with every droplet serving the new release.
 * Also `--parallel 1` once, for the order of magnitude of a rolling deploy.
 * Each figure is split in two: the droplets' time (the slowest droplet's own deploy, as its agent
 * measured it: unpacking, R starting, the health gate, the switch) and the rest (the controller
 * packing, the status round, the uploads, the network). On the lab's 2-CPU host, 10 droplets'
 * R processes start on the same 2 CPUs, so the droplets' part grows with the count where real
 * droplets each have their own CPU; the rest is what a real group deploy would also pay.
 * Run: `npm run build && tsc -p bench && node bench/dist/bench/group-deploy.js [--quick]`
 * (--quick: 3 droplets, 1 run each: a check that the benchmark works, not figures).
 */
import os from 'node:os';
import { execa } from 'execa';
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { httpGet } from '../test/e2e/helpers.js';
import { PLUMB_CLI, plumbUser } from '../test/e2e/plumb.js';

const quick = process.argv.includes('--quick');
const COUNT = quick ? 3 : 10;
const REPS = quick ? 1 : 3;
const GROUP = 'bench';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(1);

/** A deploy command's time, the droplets' part of it (the slowest droplet's own deploy), and the CLI's own CPU time. */
interface Timing {
  ms: number;
  droplet: number;
  cpu: number;
}
interface Summary extends Timing {
  rest: number;
}
const summary = (ts: Timing[]): Summary => {
  const ms = median(ts.map((t) => t.ms));
  const droplet = median(ts.map((t) => t.droplet));
  return { ms, droplet, cpu: median(ts.map((t) => t.cpu)), rest: median(ts.map((t) => t.ms - t.droplet)) };
};

/** `plumb ARGS` run by bash, whose `times` then prints its children's user and system CPU (`0m1.234s 0m0.056s`). */
async function withCpu(env: Record<string, string>, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string; cpuMs: number }> {
  const r = await execa('bash', ['-c', '"$@"; rc=$?; times >&2; exit $rc', 'bash', process.execPath, PLUMB_CLI, ...args], { env, reject: false, stdin: 'ignore' });
  const [user = 0, system = 0] = [...(r.stderr.trim().split('\n').at(-1) ?? '').matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60_000 + Number(m[2]) * 1000);
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr, cpuMs: user + system };
}

const lab = await startLab();
try {
  const user = await plumbUser(lab);
  const run = async (args: string[]) => {
    const result = await user.plumb(args);
    if (result.exitCode !== 0) throw new Error(`plumb ${args.join(' ')}: ${result.stderr}\n${result.stdout}`);
    return result;
  };
  const made = JSON.parse((await run(['provision', '--group', GROUP, '--count', String(COUNT), '--json'])).stdout) as { droplet: { id: number; name: string; ipv4: string } }[];
  const droplets = made.map((r) => r.droplet);
  const [single] = droplets;
  if (!single) throw new Error('no droplet');
  let version = 0;
  /**
   * One deploy of a new version, checked to serve the new code everywhere it went: the command's
   * time, and the droplets' part of it (the slowest droplet's own, from `--json`).
   */
  const timed = async (where: string[], targets: { ipv4: string }[], inTurn = false): Promise<Timing> => {
    const v = `v${++version}`;
    const dir = await apiDir(sumApi(v));
    const started = Date.now();
    const result = await withCpu(user.env, ['deploy', dir, '--name', 'sum', ...where, '--json']);
    const ms = Date.now() - started;
    if (result.exitCode !== 0) throw new Error(`plumb deploy ${where.join(' ')}: ${result.stderr}\n${result.stdout}`);
    const out = JSON.parse(result.stdout) as { tookMs: number; droplets?: { tookMs?: number }[] };
    for (const t of targets) {
      const body = (await httpGet(`http://${t.ipv4}/sum/version`, 10_000)).body;
      if (body !== `["${v}"]`) throw new Error(`${t.ipv4} answers ${body} after deploying ${v}`);
    }
    const each = out.droplets?.map((d) => d.tookMs ?? 0) ?? [out.tookMs];
    // At once, the slowest droplet holds the command up; in turn, each one does.
    const droplet = inTurn ? each.reduce((a, b) => a + b, 0) : Math.max(...each);
    return { ms, droplet, cpu: result.cpuMs };
  };
  // The first deploy creates the API everywhere (users, units, nginx locations): not measured.
  await timed(['--group', GROUP, '--parallel', String(COUNT)], droplets);
  // The droplets' first boot loads the host for a while after provision returns: measured once it settles (bounded).
  for (const until = Date.now() + 240_000; os.loadavg()[0]! > 3 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 5000));
  const loadBefore = os.loadavg()[0]!.toFixed(1);
  const one: Timing[] = [];
  const group: Timing[] = [];
  for (let i = 0; i < REPS; i++) {
    one.push(await timed(['--droplet', single.name], [single]));
    group.push(await timed(['--group', GROUP, '--parallel', String(COUNT)], droplets));
  }
  const rolling = await timed(['--group', GROUP, '--parallel', '1'], droplets, true);
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  const base = summary(one);
  const row = (what: string, t: Summary) =>
    `| ${what} | ${sec(t.ms)} | ${(t.ms / base.ms).toFixed(2)}x | ${sec(t.droplet)} | ${(t.droplet / base.droplet).toFixed(2)}x | ${sec(t.rest)} | ${(t.rest / base.rest).toFixed(2)}x | ${(t.cpu / 1000).toFixed(2)} | ${(t.cpu / base.cpu).toFixed(2)}x |`;
  console.log(`\n${COUNT} droplets (lab, s-1vcpu-1gb), one-file API, ${REPS} run(s) each, median; host load ${loadBefore} before the first measured deploy, ${load} after the last, ${os.cpus().length} CPUs`);
  console.log("droplets: the slowest droplet's own deploy (its agent's time; on the lab's shared CPUs it grows with the count); rest: controller and network; CLI CPU: the plumb process's own user+system seconds, the controller's share that does not run in parallel\n");
  console.log('| deploy | seconds | vs one droplet | droplets | vs one | rest | vs one | CLI CPU s | vs one |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  console.log(row('one droplet (`--droplet`)', base));
  console.log(row(`${COUNT} droplets, \`--group --parallel ${COUNT}\``, summary(group)));
  console.log(row(`${COUNT} droplets, \`--group --parallel 1\` (rolling, once; droplets: their sum)`, summary([rolling])));
} finally {
  await lab.stop();
}
