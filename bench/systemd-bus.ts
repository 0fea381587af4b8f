/**
 * The agent asking systemd (issue 14): `systemctl show` of every worker unit (one process, as the
 * agent did) beside the same properties over D-Bus on one open connection (the agent's
 * system/systemd-bus.ts, bundled and run on the droplet by the droplet's node), then `plumb status`
 * whole and the agent's RSS. Prints a table, asserts nothing.
 * Run after `npm run build && tsc -p bench`: node bench/dist/bench/systemd-bus.js [--quick]
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { benchDroplet } from './bench-droplet.js';

const quick = process.argv.includes('--quick');
const APIS = quick ? 2 : 10;
const RUNS = quick ? 5 : 21;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;

// Runs on the droplet: times both ways RUNS times, in turn, and checks they agree.
const probe = `
import { execFileSync } from 'node:child_process';
import { busUnitStates } from '${path.join(root, 'packages/agent/dist/system/systemd-bus.js')}';
const units = process.env.UNITS.split(' ');
const runs = Number(process.env.RUNS);
const SHOWN = 'ActiveState,SubState,Result,NRestarts,MainPID,ActiveEnterTimestamp,Job';
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;
let t = process.hrtime.bigint();
const first = await busUnitStates(units);
const connectMs = ms(t);
const show = [], bus = [];
for (let i = 0; i < runs; i++) {
  t = process.hrtime.bigint();
  execFileSync('systemctl', ['show', '--property=' + SHOWN, '--', ...units], { encoding: 'utf8' });
  show.push(ms(t));
  t = process.hrtime.bigint();
  await busUnitStates(units);
  bus.push(ms(t));
}
const out = execFileSync('systemctl', ['show', '--property=MainPID,ActiveState', '--', ...units], { encoding: 'utf8' }).split(/\\n\\n+/);
const agree = units.every((u, i) => out[i].includes('MainPID=' + (first.get(u).pid ?? 0)) && out[i].includes('ActiveState=' + first.get(u).active));
console.log(JSON.stringify({ connectMs, show, bus, agree }));
process.exit(0);
`;

const lab = await startLab();
try {
  const bench = await benchDroplet(lab, 'busbench');
  const onDroplet = (argv: string[], opts?: { input?: string }) => lab.droplet(bench.id).exec(argv, opts);
  const rssOf = () => onDroplet(['sh', '-c', 'grep VmRSS /proc/$(systemctl show -p MainPID --value plumb-agent)/status | tr -s " \t" " "']);
  const rssIdle = await rssOf();
  const small = await apiDir(sumApi('s0'));
  for (let i = 1; i <= APIS; i++) await bench.run(['deploy', small, '--name', `st${i}`, '--workers', '2', '--no-deps']);
  const units = (await onDroplet(['sh', '-c', "systemctl list-units --plain --no-legend 'plumber-st*@*.service' | awk '{print $1}'"])).split('\n').filter(Boolean);

  const bundled = await build({ stdin: { contents: probe, resolveDir: root, loader: 'js' }, bundle: true, platform: 'node', format: 'esm', target: 'node20', write: false, logLevel: 'warning' });
  const script = bundled.outputFiles[0]!.text;
  const result = JSON.parse(await onDroplet(['env', `UNITS=${units.join(' ')}`, `RUNS=${RUNS}`, 'node', '--input-type=module', '-'], { input: script })) as { connectMs: number; show: number[]; bus: number[]; agree: boolean };

  const statusTimes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await bench.run(['status', '--json']);
    statusTimes.push(performance.now() - started);
  }
  const rss = await rssOf();
  const load = await onDroplet(['cat', '/proc/loadavg']);

  const showMs = median(result.show);
  const busMs = median(result.bus);
  console.log(`\n### The agent asks systemd: ${units.length} worker units (${APIS} APIs x 2), median of ${RUNS}\n`);
  console.log('| what | ms |');
  console.log('|---|---|');
  console.log(`| \`systemctl show\` of ${units.length} units (one process, the agent before) | ${showMs.toFixed(1)} |`);
  console.log(`| the same over D-Bus, one open connection (ListUnitsByNames + 4 Gets per unit, all sent at once) | ${busMs.toFixed(1)} |`);
  console.log(`| of which the first question (connect and authenticate too) | ${result.connectMs.toFixed(1)} |`);
  console.log(`| \`plumb status --json\`, LAN, whole command | ${median(statusTimes).toFixed(0)} |`);
  console.log(`\nsystemctl / D-Bus: ${(showMs / busMs).toFixed(1)}x; both agree: ${result.agree}; agent ${rssIdle.trim()} idle after provision, ${rss.trim()} after the deploys and status runs; droplet load ${load.trim()}`);
} finally {
  await lab.stop();
}
