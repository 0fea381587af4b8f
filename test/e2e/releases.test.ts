import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import type { Lab } from '../lab/lab.js';
import { apiDir, crashingApi, sleepyApi, sumApi } from './api-fixtures.js';
import { httpGet, settled } from './helpers.js';
import { startLoad } from './load.js';
import { apiStatus, PLUMB_CLI, sharedDroplet, type PlumbUser } from './plumb.js';

/**
 * Deploys the API's clients never notice: releases switch under load with zero failed requests,
 * failed releases never take over, rollback, several R workers, scaling, memory limits.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;
const RPS = 200;

const json = async (path: string) => JSON.parse((await httpGet(`http://${address}${path}`, 5000)).body) as unknown;
const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);

async function deploy(version: string, ...flags: string[]) {
  return user.plumb(['deploy', await apiDir(sumApi(version)), '--name', 'sum', ...flags]);
}

/** Runs `work` under a steady load on the API and returns how many requests failed. */
async function underLoad<T>(work: () => Promise<T>): Promise<{ result: T; ok: number; failed: number; failures: string[] }> {
  const load = startLoad(`http://${address}/sum/version`, { rps: RPS });
  await new Promise((r) => setTimeout(r, 500));
  const result = await work();
  await new Promise((r) => setTimeout(r, 500));
  const report = await load.stop();
  return { result, ...report };
}

/** `plumb ARGS` in the background: its stderr as it comes, and its exit code. */
function deployWatched(args: string[]) {
  const child = spawn(process.execPath, [PLUMB_CLI, ...args], { env: { ...process.env, ...user.env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  let exited = false;
  void exit.then(() => (exited = true));
  return {
    exit,
    stderr: () => stderr,
    /** Whether stderr shows `line` before the command ends (or two minutes pass). */
    shows: async (line: RegExp) => {
      for (let i = 0; i < 1200 && !line.test(stderr) && !exited; i++) await new Promise((r) => setTimeout(r, 100));
      return line.test(stderr);
    },
  };
}

sharedDroplet(
  'rel',
  async (shared) => {
    ({ lab, user, id: dropletId, address } = shared);
    const first = await deploy('v0');
    assert.equal(first.exitCode, 0, first.stderr);
  },
);

describe('zero-downtime releases', () => {
  test(`10 redeploys under a steady load (${RPS} req/s) fail no request`, async () => {
    const run = await underLoad(async () => {
      for (let i = 1; i <= 10; i++) {
        const result = await deploy(`v${i}`);
        assert.equal(result.exitCode, 0, result.stderr);
      }
    });
    assert.deepEqual(await json('/sum/version'), ['v10']);
    assert.ok(run.ok > 1000, `the load ran (${run.ok} requests)`);
    assert.equal(run.failed, 0, run.failures.join('\n'));
  });

  test('a release that crashes at start, and one that sleeps past the health timeout, fail no request and the old one serves', async () => {
    const run = await underLoad(async () => {
      const crash = await user.plumb(['deploy', await apiDir(crashingApi), '--name', 'sum']);
      assert.equal(crash.exitCode, 1);
      const sleepy = await user.plumb(['deploy', await apiDir(sleepyApi), '--name', 'sum', '--health-timeout', '5']);
      assert.equal(sleepy.exitCode, 1);
    });
    assert.deepEqual(await json('/sum/version'), ['v10']);
    assert.equal(run.failed, 0, run.failures.join('\n'));
  });

  test('only the last 5 releases are kept, on disk and in `plumb releases`', async () => {
    // Old releases go just after a deploy's answer (ops/prune.ts).
    const { releases, onDisk } = await settled(
      async () => ({
        releases: JSON.parse((await user.plumb(['releases', 'sum', '--json'])).stdout) as { releases: Array<{ id: string; live: boolean }> },
        onDisk: (await onDroplet(['ls', '/var/plumber/sum/releases'])).split('\n').sort(),
      }),
      (s) => s.releases.releases.length === 5 && s.onDisk.length === 5,
    );
    assert.equal(releases.releases.length, 5);
    assert.equal(releases.releases.at(-1)?.live, true);
    assert.deepEqual(onDisk, releases.releases.map((r) => r.id).sort());
  });

  test('rollback returns the previous code, and --to a named release', async () => {
    const back = await user.plumb(['rollback', 'sum']);
    assert.equal(back.exitCode, 0, back.stderr);
    assert.deepEqual(await json('/sum/version'), ['v9']);
    const releases = JSON.parse((await user.plumb(['releases', 'sum', '--json'])).stdout) as { releases: Array<{ id: string; live: boolean }> };
    const newest = releases.releases.at(-1)?.id ?? '';
    const forward = await user.plumb(['rollback', 'sum', '--to', newest]);
    assert.equal(forward.exitCode, 0, forward.stderr);
    assert.deepEqual(await json('/sum/version'), ['v10']);
    const missing = await user.plumb(['rollback', 'sum', '--to', '20200101T000000Z-dead']);
    assert.equal(missing.exitCode, 1);
    assert.match(missing.stderr, /no release 20200101T000000Z-dead/);
  });
});

describe('workers', () => {
  test('--workers 2: two R processes answer behind one upstream', async () => {
    const result = await deploy('w2', '--workers', '2');
    assert.equal(result.exitCode, 0, result.stderr);
    const pids = new Set<number>();
    for (let i = 0; i < 40 && pids.size < 2; i++) pids.add(((await json('/sum/pid')) as number[])[0] ?? 0);
    assert.equal(pids.size, 2);
  });

  test('scaling 2 -> 3 -> 1 under load fails no request', async () => {
    const run = await underLoad(async () => {
      for (const n of ['3', '1']) {
        // --wait: the old workers have drained and stopped when it returns, so the units can be counted.
        const result = await user.plumb(['scale', 'sum', n, '--wait']);
        assert.equal(result.exitCode, 0, result.stderr);
      }
    });
    assert.equal(run.failed, 0, run.failures.join('\n'));
    const units = await onDroplet(['sh', '-c', 'systemctl list-units --no-legend --plain --state=active "plumber-sum@*" | wc -l']);
    assert.equal(units, '1');
  });

  test('--memory 512M becomes the workers\' systemd memory limit', async () => {
    const result = await deploy('mem', '--memory', '512M', '--wait');
    assert.equal(result.exitCode, 0, result.stderr);
    // The worker's unit (a warm spare, plumber-sum@PORT too, may run beside it: the same template, the same limit).
    const unit = `plumber-sum@${(await apiStatus(user, 'sum'))?.workers[0]?.port}.service`;
    assert.equal(await onDroplet(['systemctl', 'show', '-p', 'MemoryMax', '--value', unit]), String(512 * 1024 * 1024));
  });

  test('two deploys of the same API at once are serialized: both succeed, the second waited', async () => {
    // The first release starts only once the test says so, so the second deploy surely comes
    // while the first holds the API (what each one prints says where it is; no clock decides).
    const gate = '/var/plumber/sum/data/go';
    const held = await apiDir(sumApi('c1', `while (!file.exists("${gate}")) Sys.sleep(0.1)\n`));
    const first = deployWatched(['deploy', held, '--name', 'sum']);
    assert.ok(await first.shows(/waiting for the API to answer/), `the first deploy reached its health gate:\n${first.stderr()}`);
    const second = deployWatched(['deploy', await apiDir(sumApi('c2')), '--name', 'sum']);
    assert.ok(await second.shows(/waiting for another deploy/), `the second deploy waited:\n${second.stderr()}`);
    await onDroplet(['touch', gate]);
    const [a, b] = [await first.exit, await second.exit];
    await onDroplet(['rm', '-f', gate]);
    assert.equal(a, 0, first.stderr());
    assert.equal(b, 0, second.stderr());
    assert.deepEqual(await json('/sum/version'), ['c2']);
  });
});
