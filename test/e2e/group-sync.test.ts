import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { clientFor, httpGet, waitAction } from './helpers.js';
import { PLUMB_CLI, plumbUser, type PlumbUser } from './plumb.js';

/**
 * A group run as one: `--group` on status, releases, scale, restart, logs and remove; a droplet
 * that was off during a group deploy is flagged and `plumb group sync` brings it to the group's
 * release; a droplet added later (`provision --group`) gets the group's APIs from a member, with the
 * API's directory gone from the laptop, and the balancer counts it healthy. Two droplets boot at
 * once, a third joins later.
 */

const GROUP = 'grp';
const CHECKS = ['--check-interval', '3', '--check-timeout', '3', '--unhealthy-threshold', '2', '--healthy-threshold', '2'];

interface Member {
  id: number;
  name: string;
  ipv4: string;
}

let lab: Lab;
let user: PlumbUser;
let members: Member[];

interface LbRow {
  droplets: { id: number; healthy: boolean | null }[];
}

/** Polls `plumb lb` until every droplet in `ids` (and no other) is healthy as the balancer sees it. */
async function untilHealthy(ids: number[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await user.plumb(['lb', GROUP, '--json']);
    assert.equal(run.exitCode, 0, run.stderr);
    const [row] = JSON.parse(run.stdout) as LbRow[];
    const healthy = (row?.droplets ?? []).filter((d) => d.healthy === true).map((d) => d.id).sort();
    if (JSON.stringify(healthy) === JSON.stringify([...ids].sort())) return;
    if (Date.now() > deadline) assert.fail(`the balancer never counted ${ids.join(', ')} healthy: ${run.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const versionOn = async (ipv4: string) => (await httpGet(`http://${ipv4}/sum/version`, 5000)).body;

interface GroupStatusJson {
  drifted: string[];
  apis: { name: string; source: { droplet: string }; members: { droplet: string; state: string; digest: string | null }[] }[];
}

async function groupStatus(): Promise<{ text: string; json: GroupStatusJson }> {
  const text = await user.plumb(['status', '--group', GROUP]);
  assert.equal(text.exitCode, 0, text.stderr);
  const json = await user.plumb(['status', '--group', GROUP, '--json']);
  assert.equal(json.exitCode, 0, json.stderr);
  return { text: text.stdout, json: JSON.parse(json.stdout) as GroupStatusJson };
}

before(async () => {
  lab = await startLab();
  user = await plumbUser(lab);
  const made = await user.plumb(['provision', '--group', GROUP, '--count', '2', '--json']);
  assert.equal(made.exitCode, 0, made.stderr);
  members = (JSON.parse(made.stdout) as { droplet: Member }[]).map((r) => r.droplet).sort((a, b) => a.id - b.id);
  const deployed = await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'sum', '--group', GROUP]);
  assert.equal(deployed.exitCode, 0, deployed.stderr);
  const created = await user.plumb(['lb', 'create', GROUP, ...CHECKS]);
  assert.equal(created.exitCode, 0, created.stderr);
  await untilHealthy(members.map((m) => m.id));
});

after(async () => {
  await lab?.stop();
});

test('--group on status, releases, scale, restart and logs acts on every droplet of the group', async () => {
  const { text, json } = await groupStatus();
  assert.match(text, new RegExp(`group ${GROUP}: 2 droplets, every one on the group's current release`));
  const [sum] = json.apis;
  assert.equal(sum?.name, 'sum');
  assert.deepEqual(sum.members.map((m) => m.state), ['current', 'current']);
  assert.equal(new Set(sum.members.map((m) => m.digest)).size, 1, 'the same code has the same content digest on both droplets');

  const releases = await user.plumb(['releases', 'sum', '--group', GROUP]);
  assert.equal(releases.exitCode, 0, releases.stderr);
  for (const m of members) assert.match(releases.stdout, new RegExp(`^${m.name}: \\* \\S+ .* content ${sum.members[0]?.digest?.slice(0, 12)}`, 'm'));

  const scaled = await user.plumb(['scale', 'sum', '2', '--group', GROUP]);
  assert.equal(scaled.exitCode, 0, scaled.stderr);
  for (const m of members) assert.match(scaled.stdout, new RegExp(`^${m.name}:\\s+sum: 1 -> 2 workers`, 'm'));
  const pids = async (ipv4: string) => {
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) seen.add((await httpGet(`http://${ipv4}/sum/pid`)).body);
    return seen;
  };
  for (const m of members) assert.equal((await pids(m.ipv4)).size, 2, `two workers answer on ${m.name}`);

  // Following the group's log while each droplet writes a line: both lines arrive, each with its droplet.
  const follow = execa(process.execPath, [PLUMB_CLI, 'logs', 'sum', '--group', GROUP, '-f', '-n', '0'], { env: user.env, reject: false, stdin: 'ignore' });
  let out = '';
  follow.stdout?.on('data', (chunk: Buffer) => (out += String(chunk)));
  const deadline = Date.now() + 60_000;
  const wanted = members.map((m) => new RegExp(`^${m.name}  \\S+ plumber-sum@\\d+  shout: from-${m.name}$`, 'm'));
  while (!wanted.every((w) => w.test(out)) && Date.now() < deadline) {
    for (const m of members) await httpGet(`http://${m.ipv4}/sum/shout?msg=from-${m.name}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  follow.kill('SIGINT');
  await follow;
  for (const w of wanted) assert.match(out, w);

  const restarted = await user.plumb(['restart', 'sum', '--group', GROUP]);
  assert.equal(restarted.exitCode, 0, restarted.stderr);
  for (const m of members) assert.match(restarted.stdout, new RegExp(`^${m.name}:\\s+restarted sum \\(2 workers\\)`, 'm'));
  // The last lines of each droplet, merged by time: both droplets' lines, in time order.
  const recent = await user.plumb(['logs', 'sum', '--group', GROUP, '-n', '20']);
  assert.equal(recent.exitCode, 0, recent.stderr);
  for (const m of members) assert.match(recent.stdout, new RegExp(`^${m.name}  \\d{4}-\\d\\d-\\d\\dT\\S+Z `, 'm'));
  const times = recent.stdout.trim().split('\n').map((l) => l.split('  ')[1]?.split(' ')[0] ?? '');
  assert.deepEqual(times, [...times].sort(), 'merged by time');

  const both = await user.plumb(['status', '--group', GROUP, '--droplet', members[0]!.name]);
  assert.equal(both.exitCode, 2, 'a group and one droplet at once is a usage error');
});

test("a droplet off during a group deploy is flagged as drifted; group sync copies the group's release to it", async () => {
  const [first, second] = members;
  assert.ok(first && second);
  const api = clientFor(lab);
  assert.equal(await waitAction(api, (await api.droplet.powerOffDroplet({ droplet_id: second.id })).data.action.id), 'completed');
  const dir = await apiDir(sumApi('v2'));
  const deployed = await user.plumb(['deploy', dir, '--name', 'sum', '--group', GROUP]);
  assert.equal(deployed.exitCode, 1, deployed.stdout);
  assert.match(deployed.stdout, new RegExp(`${second.name}: FAILED`));
  assert.equal(await waitAction(api, (await api.droplet.powerOnDroplet({ droplet_id: second.id })).data.action.id), 'completed');
  // Back on, it serves what it served before the deploy, so the balancer counts it healthy: only plumb can tell.
  await untilHealthy([first.id, second.id]);
  assert.deepEqual([await versionOn(first.ipv4), await versionOn(second.ipv4)], ['["v2"]', '["v1"]']);
  const drifted = await groupStatus();
  assert.deepEqual(drifted.json.drifted, [second.name]);
  assert.match(drifted.text, new RegExp(`not on the group's current release: ${second.name} \\(\`plumb group sync ${GROUP}\``));
  assert.match(drifted.text, new RegExp(`^    ${second.name}: \\S+ \\(content \\w+\\)  DRIFT`, 'm'));

  // The laptop no longer has the API's directory: the release comes from the first droplet.
  await rm(dir, { recursive: true });
  const synced = await user.plumb(['group', 'sync', GROUP]);
  assert.equal(synced.exitCode, 0, synced.stderr);
  assert.match(synced.stdout, new RegExp(`sum: release \\S+ of ${first.name}, copied to\\n    ${second.name}: \\S+ -> \\S+`));
  assert.equal(await versionOn(second.ipv4), '["v2"]');
  const inStep = await groupStatus();
  assert.deepEqual(inStep.json.drifted, []);
  const again = await user.plumb(['group', 'sync', GROUP]);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.match(again.stdout, /already runs the group's current release/);
});

test("a droplet added to the group later gets the group's APIs from a member and the balancer counts it healthy", async () => {
  const added = await user.plumb(['provision', '--group', GROUP, '--json']);
  assert.equal(added.exitCode, 0, added.stderr);
  const [row] = JSON.parse(added.stdout) as { droplet: Member; synced?: { ok: boolean; apis: { name: string; droplets: { droplet: string; outcome: string }[] }[] } }[];
  assert.ok(row);
  const third = row.droplet;
  assert.equal(row.synced?.ok, true, added.stdout);
  assert.deepEqual(row.synced.apis.map((a) => [a.name, a.droplets.map((d) => [d.droplet, d.outcome])]), [['sum', [[third.name, 'updated']]]]);
  // The group's settings came with it: two workers, as `scale --group` left the others.
  assert.equal(await versionOn(third.ipv4), '["v2"]');
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) seen.add((await httpGet(`http://${third.ipv4}/sum/pid`)).body);
  assert.equal(seen.size, 2);
  members = [...members, third];
  await untilHealthy(members.map((m) => m.id));
  assert.deepEqual((await groupStatus()).json.drifted, []);
});

test('remove --group takes the API off every droplet', async () => {
  const refused = await user.plumb(['remove', 'sum', '--group', GROUP]);
  assert.equal(refused.exitCode, 2, 'without --yes off a terminal it asks, and so refuses');
  const removed = await user.plumb(['remove', 'sum', '--group', GROUP, '--yes']);
  assert.equal(removed.exitCode, 0, removed.stderr);
  for (const m of members) {
    assert.match(removed.stdout, new RegExp(`^${m.name}: removed sum`, 'm'));
    assert.equal((await httpGet(`http://${m.ipv4}/sum/version`)).status, 404);
  }
  assert.match((await groupStatus()).text, /no APIs yet/);
});
