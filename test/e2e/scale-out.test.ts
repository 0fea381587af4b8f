import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { clientFor, httpGet, waitAction } from './helpers.js';
import { startLoad } from './load.js';
import { plumbUser, type PlumbUser } from './plumb.js';

/**
 * One API on a group of three droplets behind a DigitalOcean Load Balancer (the lab's HAProxy),
 * driven with the real `plumb`: group provision, `lb create`, rolling group deploys under load,
 * a deploy that fails on the second droplet and the group rollback, a droplet powered off.
 * The three droplets boot at once (provision --count 3 makes them concurrently).
 */

const GROUP = 'web';
/** Fast checks so the unhealthy window (interval x threshold = 6 s) fits a test. */
const CHECKS = ['--check-interval', '3', '--check-timeout', '3', '--unhealthy-threshold', '2', '--healthy-threshold', '2'];

let lab: Lab;
let user: PlumbUser;
let members: { id: number; name: string; ipv4: string }[];
let balancerIp: string;

interface LbRow {
  ip: string;
  droplets: { id: number; name: string; healthy: boolean | null }[];
}

async function lbState(): Promise<LbRow> {
  const run = await user.plumb(['lb', GROUP, '--json']);
  assert.equal(run.exitCode, 0, run.stderr);
  const [row] = JSON.parse(run.stdout) as LbRow[];
  assert.ok(row, `no balancer for ${GROUP}: ${run.stdout}`);
  return row;
}

/** Polls `plumb lb` until `want` holds for the balancer's view; the view that satisfied it. */
async function untilBalancer(want: (row: LbRow) => boolean, what: string, timeoutMs = 90_000): Promise<LbRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await lbState();
    if (want(row)) return row;
    if (Date.now() > deadline) assert.fail(`the balancer never showed ${what}: ${JSON.stringify(row.droplets)}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const allHealthy = (row: LbRow) => row.droplets.length === members.length && row.droplets.every((d) => d.healthy === true);
const versionOn = async (ipv4: string) => (await httpGet(`http://${ipv4}/sum/version`, 5000)).body;

async function deployGroup(version: string, extra: string[] = []) {
  return user.plumb(['deploy', await apiDir(sumApi(version)), '--name', 'sum', '--group', GROUP, ...extra]);
}

before(async () => {
  lab = await startLab();
  user = await plumbUser(lab);
  const made = await user.plumb(['provision', '--group', GROUP, '--count', '3', '--json']);
  assert.equal(made.exitCode, 0, made.stderr);
  members = (JSON.parse(made.stdout) as { droplet: { id: number; name: string; ipv4: string } }[]).map((r) => r.droplet).sort((a, b) => a.id - b.id);
  const deployed = await deployGroup('v1');
  assert.equal(deployed.exitCode, 0, deployed.stderr);
  const created = await user.plumb(['lb', 'create', GROUP, ...CHECKS, '--json']);
  assert.equal(created.exitCode, 0, created.stderr);
  balancerIp = (JSON.parse(created.stdout) as LbRow).ip;
  await untilBalancer(allHealthy, 'every droplet healthy');
});

after(async () => {
  await lab?.stop();
});

test('provision --group: the droplets carry the group tag, and the group and its balancer are found from DigitalOcean alone', async () => {
  const listed = await user.plumb(['droplets']);
  assert.equal(listed.exitCode, 0, listed.stderr);
  for (const d of members) assert.match(listed.stdout, new RegExp(`^${d.name} .* ${GROUP} `, 'm'));
  const { droplets } = (await clientFor(lab).droplet.listDroplets({ tag_name: `plumb-group:${GROUP}` })).data;
  assert.deepEqual(droplets.map((d) => d.id).sort(), members.map((d) => d.id).sort());
  // Another machine with no local state sees the group and the balancer.
  const stranger = await plumbUser(lab);
  const seen = await stranger.plumb(['droplets']);
  for (const d of members) assert.match(seen.stdout, new RegExp(`^${d.name} .* ${GROUP} .*not this controller`, 'm'));
  const lb = await stranger.plumb(['lb']);
  assert.equal(lb.exitCode, 0, lb.stderr);
  assert.match(lb.stdout, new RegExp(`plumb-${GROUP} \\(group ${GROUP}\\) active at ${balancerIp.replaceAll('.', '\\.')}`));
  for (const d of members) assert.match(lb.stdout, new RegExp(`${d.name} \\(${d.id}\\): healthy`));
});

test('each droplet answers /__plumb/health on port 80 with every API it serves', async () => {
  for (const d of members) {
    const health = await httpGet(`http://${d.ipv4}/__plumb/health`);
    assert.equal(health.status, 200, health.body);
    assert.deepEqual((JSON.parse(health.body) as { apis: { name: string; healthy: boolean }[] }).apis.map((a) => [a.name, a.healthy]), [['sum', true]]);
  }
  // One API down on one droplet: that droplet's health says so, and the balancer takes it out.
  const [, , third] = members;
  assert.ok(third);
  await lab.droplet(third.id).exec(['sh', '-c', 'systemctl stop "plumber-sum@*"']);
  const down = await httpGet(`http://${third.ipv4}/__plumb/health`);
  assert.equal(down.status, 503, down.body);
  await untilBalancer((row) => row.droplets.find((d) => d.id === third.id)?.healthy === false, `${third.name} unhealthy`);
  const restarted = await user.plumb(['restart', 'sum', '--droplet', third.name]);
  assert.equal(restarted.exitCode, 0, restarted.stderr);
  await untilBalancer(allHealthy, 'every droplet healthy again');
});

test('three group redeploys under a steady load through the balancer: no request fails', async () => {
  const load = startLoad(`http://${balancerIp}/sum/add?a=1&b=2`, { rps: 20, concurrency: 4, maxMs: 240_000 });
  for (const version of ['v2', 'v3', 'v4']) {
    const deployed = await deployGroup(version);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.match(deployed.stdout, new RegExp(`deployed sum on every droplet of group ${GROUP} \\(3\\)`));
  }
  const report = await load.stop();
  assert.equal(report.failed, 0, report.failures.join('\n'));
  assert.ok(report.ok > 50, `only ${report.ok} requests answered`);
  for (const d of members) assert.equal(await versionOn(d.ipv4), '["v4"]');
  assert.equal((await httpGet(`http://${balancerIp}/sum/version`)).body, '["v4"]');
});

test('a deploy failing its health gate on the second droplet stops there; rollback --group puts back one release everywhere', async () => {
  const [first, second, third] = members;
  assert.ok(first && second && third);
  // R code that refuses to start on the second droplet only (its hostname is the droplet's name).
  const failsOnSecond = sumApi('v5', `if (Sys.info()[["nodename"]] == "${second.name}") stop("this release cannot start on ${second.name}")\n`);
  const deployed = await user.plumb(['deploy', await apiDir(failsOnSecond), '--name', 'sum', '--group', GROUP]);
  assert.equal(deployed.exitCode, 1, deployed.stdout);
  assert.match(deployed.stdout, /stopped at the first failure/);
  assert.match(deployed.stdout, new RegExp(`${first.name}: \\S+ -> \\S+`));
  assert.match(deployed.stdout, new RegExp(`${second.name}: FAILED \\(the new release did not come up`));
  assert.match(deployed.stdout, /Execution halted/, "the failing droplet's last log lines (R's) are shown");
  assert.match(deployed.stdout, new RegExp(`${third.name}: untouched`));
  assert.deepEqual([await versionOn(first.ipv4), await versionOn(second.ipv4), await versionOn(third.ipv4)], ['["v5"]', '["v4"]', '["v4"]']);

  const rolled = await user.plumb(['rollback', 'sum', '--group', GROUP]);
  assert.equal(rolled.exitCode, 0, rolled.stderr);
  assert.match(rolled.stdout, new RegExp(`rolled back sum on every droplet of group ${GROUP}`));
  for (const d of members) assert.equal(await versionOn(d.ipv4), '["v4"]');
  const again = await user.plumb(['rollback', 'sum', '--group', GROUP]);
  assert.equal(again.exitCode, 1);
  assert.match(again.stderr, /no group deploy of sum to web to undo/);
});

test('a droplet powered off: the balancer takes it out within its unhealthy window, then every request succeeds', async () => {
  const [, , third] = members;
  assert.ok(third);
  const during = startLoad(`http://${balancerIp}/sum/add?a=1&b=2`, { rps: 20, concurrency: 4, maxMs: 120_000 });
  const api = clientFor(lab);
  const { action } = (await api.droplet.powerOffDroplet({ droplet_id: third.id })).data;
  assert.equal(await waitAction(api, action.id), 'completed');
  const view = await untilBalancer((row) => row.droplets.find((d) => d.id === third.id)?.healthy === false, `${third.name} out`);
  await during.stop();
  assert.deepEqual(view.droplets.filter((d) => d.healthy).map((d) => d.id).sort(), members.filter((d) => d.id !== third.id).map((d) => d.id).sort());
  const afterwards = startLoad(`http://${balancerIp}/sum/add?a=1&b=2`, { rps: 20, concurrency: 4, maxMs: 5_000 });
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const report = await afterwards.stop();
  assert.equal(report.failed, 0, report.failures.join('\n'));
  assert.ok(report.ok > 20, `only ${report.ok} requests answered`);
});
