/**
 * Benchmark for issue 15: `plumb deploy --group G --parallel N` to N droplets against the same
 * deploy to one droplet (goal: at most 1.5x), in the lab; prints a table, asserts nothing.
 * The droplets are made at once (`provision --group --count N`); every deploy is a new version
 * of a one-file API (the bundle packed once, then each droplet's own zero-downtime rollout), and
 * the time is the command's, until it returns with every droplet serving the new release.
 * Also `--parallel 1` once, for the order of magnitude of a rolling deploy.
 * Run: `npm run build && tsc -p bench && node bench/dist/bench/group-deploy.js [--quick]`
 * (--quick: 3 droplets, 1 run each: a check that the benchmark works, not figures).
 */
import os from 'node:os';
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { httpGet } from '../test/e2e/helpers.js';
import { plumbUser } from '../test/e2e/plumb.js';

const quick = process.argv.includes('--quick');
const COUNT = quick ? 3 : 10;
const REPS = quick ? 1 : 3;
const GROUP = 'bench';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(1);

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
  /** One deploy of a new version; its command time, checked to serve the new code everywhere it went. */
  const timed = async (where: string[], targets: { ipv4: string }[]) => {
    const v = `v${++version}`;
    const dir = await apiDir(sumApi(v));
    const started = Date.now();
    await run(['deploy', dir, '--name', 'sum', ...where]);
    const ms = Date.now() - started;
    for (const t of targets) {
      const body = (await httpGet(`http://${t.ipv4}/sum/version`, 10_000)).body;
      if (body !== `["${v}"]`) throw new Error(`${t.ipv4} answers ${body} after deploying ${v}`);
    }
    return ms;
  };
  // The first deploy creates the API everywhere (users, units, nginx locations): not measured.
  await timed(['--group', GROUP, '--parallel', String(COUNT)], droplets);
  const one: number[] = [];
  const group: number[] = [];
  for (let i = 0; i < REPS; i++) {
    one.push(await timed(['--droplet', single.name], [single]));
    group.push(await timed(['--group', GROUP, '--parallel', String(COUNT)], droplets));
  }
  const rolling = await timed(['--group', GROUP, '--parallel', '1'], droplets);
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(`\n${COUNT} droplets (lab, s-1vcpu-1gb), one-file API, ${REPS} run(s) each, median; host load ${load}, ${os.cpus().length} CPUs\n`);
  console.log('| deploy | seconds | vs one droplet |');
  console.log('|---|---|---|');
  console.log(`| one droplet (\`--droplet\`) | ${sec(median(one))} | 1.00x |`);
  console.log(`| ${COUNT} droplets, \`--group --parallel ${COUNT}\` | ${sec(median(group))} | ${(median(group) / median(one)).toFixed(2)}x |`);
  console.log(`| ${COUNT} droplets, \`--group --parallel 1\` (rolling, once) | ${sec(rolling)} | ${(rolling / median(one)).toFixed(2)}x |`);
} finally {
  await lab.stop();
}
