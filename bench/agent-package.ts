/**
 * The agent package as the droplet gets it (issue 18): its size, and how long node takes to load
 * the bundle (`plumb-agent --version` evaluates the whole bundle first) beside node's own start,
 * the floor. Run after `npm run build`: node bench/dist/bench/agent-package.js [OTHER-BUNDLE]
 * (e.g. an older build's bundle, for the before/after table in docs/benchmarks.md).
 */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { agentPackage } from '@plumb/controller/agent/package';

const RUNS = 21;

function medianMs(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = process.hrtime.bigint();
    execFileSync(process.execPath, args, { stdio: 'ignore' });
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return times.sort((a, b) => a - b)[RUNS >> 1] ?? 0;
}

const pkg = await agentPackage({});
const bundle = new URL('../../../packages/agent/bundle/plumb-agent.mjs', import.meta.url).pathname;
const floor = medianMs(['-e', '0']);
const rows: [string, string, string, string][] = [['what', 'bytes', 'load ms (median)', 'over node alone']];
rows.push(['node -e 0 (the floor)', '', floor.toFixed(0), '']);
for (const file of [bundle, ...process.argv.slice(2)]) {
  const ms = medianMs([file, '--version']);
  rows.push([file, String(statSync(file).size), ms.toFixed(0), `+${(ms - floor).toFixed(0)} ms`]);
}
rows.push([`package ${pkg.tarballPath.split('/').pop() ?? ''}`, String(pkg.bytes), '', '']);
const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i as 0 | 1 | 2 | 3].length)));
for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  '));
