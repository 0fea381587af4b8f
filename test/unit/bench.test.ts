import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * `npm run build` compiles bench/ too, so a change that breaks a benchmark's types fails the build.
 * The one benchmark that needs no lab droplet runs here, one round: it still prints every row with
 * figures. (The lab benchmarks' `--quick` runs take about ten minutes each: not part of the tests.)
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('bench/cli-start.ts runs and prints a figure for every case', () => {
  const r = spawnSync(process.execPath, [path.join(root, 'bench/dist/bench/cli-start.js'), '1'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => /^\| (node|plumb|unbundled)/.test(l));
  assert.equal(rows.length, 8, r.stdout);
  for (const row of rows) {
    const figures = row.split('|').slice(2, -1).map((c) => c.trim()).filter((c) => c !== '');
    // Milliseconds, signed differences, and ratios to the floor (0.92).
    assert.ok(figures.length >= 2 && figures.every((c) => /^[+-]?\d+(\.\d+)?$/.test(c)), `not a figure in: ${row}`);
  }
});
