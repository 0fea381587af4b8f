import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import type { Lab } from '../lab/lab.js';
import { apiDir, crashingApi, sleepyApi, sumApi } from './api-fixtures.js';
import { httpGet, settled } from './helpers.js';
import { startLoad } from './load.js';
import { apiStatus, PLUMB_CLI, readySpare, sharedDroplet, sparesDecided, type PlumbUser } from './plumb.js';

/**
 * Deploys the API's clients never notice: releases switch under load with zero failed requests,
 * failed releases never take over, rollback, several R workers, scaling, memory limits, and what
 * each of those does to the API's warm spare.
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

/** The memory limit systemd puts on the unit of the API's process on `port` (a worker's or its spare's). */
const memoryMax = (port: number | undefined) => onDroplet(['systemctl', 'show', '-p', 'MemoryMax', '--value', `plumber-sum@${port}.service`]);
/** The API's units systemd runs (or is starting): its workers and its spare. */
const activeUnits = () => onDroplet(['sh', '-c', 'systemctl list-units --no-legend --plain --state=active,activating "plumber-sum@*" | wc -l']).then((n) => n.trim());

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

/**
 * The warm spare (issue 14) where a rollout other than a plain deploy meets it; sum runs one worker
 * under auto here (the default), and a 1 GiB droplet with one API has room for its spare.
 */
describe('the warm spare around --memory, scale and secrets', () => {
  const MIB = 1024 * 1024;

  test('a --memory deploy that fails the health gate leaves the unit\'s memory limit as it was, and the live release gets a spare under that limit, which the next deploy takes', async () => {
    const live = await deploy('m1', '--memory', '512M', '--workers', '1', '--wait');
    assert.equal(live.exitCode, 0, live.stderr);
    await readySpare(user, 'sum');
    const failed = await user.plumb(['deploy', await apiDir(crashingApi), '--name', 'sum', '--memory', '256M']);
    assert.equal(failed.exitCode, 1, failed.stderr);
    // The spare loaded under the live limit: not the worker this unit now makes.
    assert.match(failed.stderr, /cold: the warm spare was not used \(its unit changed\)/);
    const spare = await readySpare(user, 'sum');
    const worker = (await apiStatus(user, 'sum'))?.workers[0]?.port;
    assert.equal(await memoryMax(worker), String(512 * MIB), "the live worker's limit");
    assert.equal(await memoryMax(spare.port), String(512 * MIB), "the spare's limit");
    const next = await deploy('m2');
    assert.equal(next.exitCode, 0, next.stderr);
    assert.match(next.stderr, new RegExp(`the warm spare on port ${spare.port} takes the release`));
    assert.deepEqual(await json('/sum/version'), ['m2']);
    assert.equal(await memoryMax(spare.port), String(512 * MIB), 'the new release runs on the spare, under the kept limit');
  });

  test('more than one worker ends an auto spare: deploy --workers 2 takes it and keeps none, plumb scale 2 stops it; plumb status says why', async () => {
    const why = 'auto: 2 workers, and one spare does not speed a redeploy whose other workers start cold';
    const noSpare = async (what: string) => {
      await sparesDecided(user);
      const row = await apiStatus(user, 'sum');
      assert.deepEqual([row?.spare, row?.spareWhy], [null, why], what);
      assert.match((await user.plumb(['status'])).stdout, new RegExp(`^  sum: no warm spare \\(${why}\\)$`, 'm'), what);
      assert.equal(await activeUnits(), '2', `${what}: two workers, no spare`);
    };
    const taken = await readySpare(user, 'sum');
    const two = await deploy('n2', '--workers', '2', '--wait');
    assert.equal(two.exitCode, 0, two.stderr);
    assert.match(two.stderr, new RegExp(`the warm spare on port ${taken.port} takes the release`));
    await noSpare('deploy --workers 2');
    const one = await deploy('n1', '--workers', '1', '--wait');
    assert.equal(one.exitCode, 0, one.stderr);
    const spare = await readySpare(user, 'sum');
    assert.ok(spare.pid !== null);
    const scaled = await user.plumb(['scale', 'sum', '2', '--wait']);
    assert.equal(scaled.exitCode, 0, scaled.stderr);
    await noSpare('scale 2');
    assert.equal((await onDroplet(['sh', '-c', `test -d /proc/${spare.pid} && echo running || echo gone`])).trim(), 'gone', "the spare's R process");
  });

  test("plumb secrets set after a rollback: the spare, started with the old secrets and the newer release's --env, starts again with the new secrets and the live release's --env, and the next deploy it takes serves them", async () => {
    const tokenApi = async (version: string) => apiDir(sumApi(version, '#* @get /token\nfunction() c(Sys.getenv("SUM_TOKEN", "unset"), Sys.getenv("MODE", "unset"))\n'));
    // s2 with an --env of its own: the spare it leaves started with it.
    for (const [version, env] of [['s1', []], ['s2', ['--env', 'MODE=two']]] as const) {
      const result = await user.plumb(['deploy', await tokenApi(version), '--name', 'sum', '--workers', '1', ...env, '--wait']);
      assert.equal(result.exitCode, 0, result.stderr);
    }
    const old = await readySpare(user, 'sum');
    assert.ok(old.pid !== null);
    const back = await user.plumb(['rollback', 'sum', '--wait']);
    assert.equal(back.exitCode, 0, back.stderr);
    assert.deepEqual(await json('/sum/version'), ['s1']);
    const set = await user.plumb(['secrets', 'set', 'sum', 'SUM_TOKEN'], { input: 't1' });
    assert.equal(set.exitCode, 0, set.stderr);
    assert.deepEqual(await json('/sum/token'), ['t1', 'unset']);
    // Started again with the live release's --env (s1 has none) and the new secret.
    const fresh = await readySpare(user, 'sum', (s) => s.pid !== old.pid);
    const env = await onDroplet(['cat', `/var/lib/plumb/instances/sum@${fresh.port}.env`]);
    assert.match(env, /^SUM_TOKEN="t1"$/m, "the new spare's env file");
    assert.doesNotMatch(env, /^MODE=/m, "the new spare's env file");
    assert.equal((await onDroplet(['sh', '-c', `test -d /proc/${old.pid} && echo running || echo gone`])).trim(), 'gone', 'the spare with the old secrets');
    const next = await user.plumb(['deploy', await tokenApi('s3'), '--name', 'sum']);
    assert.equal(next.exitCode, 0, next.stderr);
    assert.match(next.stderr, new RegExp(`the warm spare on port ${fresh.port} takes the release`));
    assert.deepEqual([await json('/sum/version'), await json('/sum/token')], [['s3'], ['t1', 'unset']]);
  });
});
