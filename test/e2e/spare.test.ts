import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DeployResult } from '@plumb/shared';
import type { Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet, settled } from './helpers.js';
import { agentAnswersAgain, sharedDroplet, spareLine, waitingSpare, type PlumbUser } from './plumb.js';

/**
 * The warm spare across agent restarts (issue 14): an agent that starts again (plumb upgrade, a
 * reboot, a crash) decides each API's spare as a deploy's answer would, so the next deploy is
 * handed to a spare, not started cold; and what auto decides by is remembered on disk. The rest of
 * the spare (what it loads, when it is not used) is tested in r-packages.test.ts.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;

const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
const MEASURED = '/var/lib/plumb/spare-measurements.json';
type Figures = { coldMs?: number; spareMs?: number; lastSpareMs?: number; spareBytes?: number };
/** What the agent remembers for auto, per API (none while the file is missing). */
const remembered = async () => (JSON.parse(await onDroplet(['sh', '-c', `cat ${MEASURED} 2>/dev/null || echo '{"apis":{}}'`])) as { apis: Record<string, Figures> }).apis;

async function deploy(version: string) {
  const run = await user.plumb(['deploy', await apiDir(sumApi(version)), '--name', 'sum', '--json']);
  assert.equal(run.exitCode, 0, run.stderr);
  return { ...run, result: JSON.parse(run.stdout) as DeployResult };
}

sharedDroplet('spare', async (shared) => {
  ({ lab, user, id: dropletId, address } = shared);
  await deploy('v1');
});

describe('the warm spare across agent restarts', () => {
  test('after the agent restarts, the spare comes back (plumb status never says none meanwhile), the next deploy is handed to it and serves the new code, and the cold start measured before the restart is still what auto knows', async () => {
    const first = await waitingSpare(user, 'sum');
    assert.ok(first, `the first deploy left a spare: ${await spareLine(user, 'sum')}`);
    const before = await settled(remembered, (m) => m['sum']?.coldMs !== undefined);
    const coldMs = before['sum']?.coldMs;
    assert.ok(coldMs !== undefined && coldMs > 0, `the first deploy's cold start is on disk: ${JSON.stringify(before)}`);

    await onDroplet(['systemctl', 'restart', 'plumb-agent']);
    assert.ok(await agentAnswersAgain(user), 'the agent answers plumb again');
    // The spare of the last run was stopped (reconcile.ts); a new R process loads and waits.
    const whys: string[] = [];
    const again = await waitingSpare(user, 'sum', { fits: (s) => s.pid !== first.pid, timeoutMs: 60_000, whys });
    assert.ok(again, `a warm spare is back within 60 s of the restart: ${await spareLine(user, 'sum')}`);
    assert.deepEqual(whys, [], 'while it was decided, plumb status gave no reason for having none');

    const second = await deploy('v2');
    assert.match(second.stderr, new RegExp(`the warm spare on port ${again.port} takes the release`));
    assert.deepEqual(second.result.ports, [again.port]);
    assert.deepEqual(JSON.parse((await httpGet(`http://${address}/sum/version`, 30_000)).body), ['v2']);
    // A handover writes its own figures only: the cold start beside them is the one the agent read back at its start.
    const after = await settled(remembered, (m) => m['sum']?.spareMs !== undefined);
    assert.ok(after['sum']?.spareMs !== undefined, `the handover is on disk: ${JSON.stringify(after)}`);
    assert.equal(after['sum']?.coldMs, coldMs, 'the cold start measured before the restart is remembered');
  });

  test('plumb remove forgets what auto measured of the API', async () => {
    const removed = await user.plumb(['remove', 'sum', '--yes']);
    assert.equal(removed.exitCode, 0, removed.stderr);
    const left = await settled(remembered, (m) => m['sum'] === undefined);
    assert.deepEqual(left, {});
  });
});
