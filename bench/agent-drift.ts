/**
 * Does the agent's memory grow with deploys? One lab droplet, one-file API redeployed N times
 * (a line changed each time) with a `plumb status` after each; the agent's RSS, and its anonymous
 * and file-backed parts, every 10 deploys. Prints a table; asserts nothing.
 * Run: `node bench/dist/bench/agent-drift.js [--deploys N]`.
 */
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { benchDroplet } from './bench-droplet.js';

const at = process.argv.indexOf('--deploys');
const DEPLOYS = at > 0 ? Number(process.argv[at + 1]) : 60;
const lab = await startLab();
try {
  const bench = await benchDroplet(lab, 'drift');
  const onDroplet = (argv: string[]) => lab.droplet(bench.id).exec(argv);
  const agentPid = (await onDroplet(['systemctl', 'show', 'plumb-agent.service', '-p', 'MainPID', '--value'])).trim();
  const memory = async () => {
    const status = await onDroplet(['cat', `/proc/${agentPid}/status`]);
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN) / 1024;
    return { rss: kib('VmRSS'), anon: kib('RssAnon'), file: kib('RssFile'), peak: kib('VmHWM') };
  };
  const rows: string[] = [];
  const row = async (deploys: number) => {
    const m = await memory();
    rows.push(`| ${deploys} | ${m.rss.toFixed(1)} | ${m.anon.toFixed(1)} | ${m.file.toFixed(1)} | ${m.peak.toFixed(1)} |`);
    console.error(rows.at(-1));
  };
  await row(0);
  for (let i = 1; i <= DEPLOYS; i++) {
    await bench.run(['deploy', await apiDir(sumApi(`v${i}`)), '--name', 'drift', '--json']);
    await bench.run(['status', '--json']);
    if (i % 10 === 0) await row(i);
  }
  console.log(`\n### The agent's memory over ${DEPLOYS} redeploys (one-file API, a status after each)\n`);
  console.log('| deploys | RSS MiB | anonymous | file-backed | peak |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  await lab.stop();
}
