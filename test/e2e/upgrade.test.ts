import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AGENT_NODE_FLAGS, compareVersions } from '@plumb/shared';
import { PLUMB_VERSION } from '@plumb/controller/agent/version';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { buildInstallation, type Installation } from './installation.js';
import { startLoad } from './load.js';
import { plumbUser, type PlumbUser } from './plumb.js';

/**
 * `plumb upgrade` and controller keys on one lab droplet: provisioned by an older plumb (the same
 * code built as 0.0.1), upgraded in place by this one while a steady load runs against its API,
 * a broken agent rolled back by the droplet itself, a downgrade refused, then a teammate's key
 * added, used and revoked.
 */

const OLD = '0.0.1';
const [major = 0, minor = 0, patch = 0] = PLUMB_VERSION.split('-')[0]!.split('.').map(Number);
const NEXT = `${major}.${minor}.${patch + 1}`;
const DROPLET = 'upg';

let lab: Lab;
let user: PlumbUser;
let old: Installation;
let broken: Installation;
let dropletId: number;
let address: string;

const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
const pinOf = async (u: PlumbUser) =>
  (JSON.parse(await readFile(path.join(u.configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: { name: string; fingerprint: string }[] }).droplets.find((d) => d.name === DROPLET)?.fingerprint;
interface StatusJson {
  agent: { version: string; upgradeAvailable: string | null };
  status: { events: { id: number; kind: string; detail: string }[]; apis: { name: string; workers: { pid: number | null }[] }[] };
}
const statusJson = async (u: PlumbUser = user): Promise<StatusJson> => {
  const run = await u.plumb(['status', DROPLET, '--json']);
  assert.equal(run.exitCode, 0, run.stderr);
  const [droplet] = JSON.parse(run.stdout) as StatusJson[];
  assert.ok(droplet);
  return droplet;
};
/** A steady load on the API while `work` runs: nothing may fail. */
async function underLoad<T>(work: () => Promise<T>): Promise<T> {
  const load = startLoad(`http://${address}/sum/add?a=1&b=2`, { rps: 20, concurrency: 4, maxMs: 240_000 });
  const result = await work();
  const report = await load.stop();
  assert.equal(report.failed, 0, `requests failed: ${report.failures.join('; ')}`);
  assert.ok(report.ok > 20, `only ${report.ok} requests answered`);
  return result;
}

before(async () => {
  assert.ok(compareVersions(OLD, PLUMB_VERSION) < 0, `this plumb (${PLUMB_VERSION}) must be newer than ${OLD}`);
  lab = await startLab();
  user = await plumbUser(lab);
  [old, broken] = await Promise.all([buildInstallation(OLD), buildInstallation(NEXT, { breakAgent: true })]);
  const provisioned = await old.plumb(user, ['provision', '--name', DROPLET, '--json']);
  if (provisioned.exitCode !== 0) throw new Error(`plumb ${OLD} provision failed:\n${provisioned.stderr}`);
  ({ id: dropletId, ipv4: address } = (JSON.parse(provisioned.stdout) as { droplet: { id: number; ipv4: string } }).droplet);
  const deployed = await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'sum', '--droplet', DROPLET]);
  if (deployed.exitCode !== 0) throw new Error(`deploy failed:\n${deployed.stderr}`);
});

after(async () => {
  await old?.close();
  await broken?.close();
  await lab?.stop();
});

describe('plumb upgrade', () => {
  test(`an agent provisioned at ${OLD} is upgraded in place: the API answers throughout, pin, state, events and workers are kept`, async () => {
    const before = await statusJson();
    assert.equal(before.agent.version, OLD);
    assert.equal(before.agent.upgradeAvailable, PLUMB_VERSION);
    const text = await user.plumb(['status', DROPLET]);
    assert.match(text.stdout, new RegExp(`agent ${OLD} \\(${PLUMB_VERSION} available: plumb upgrade --droplet ${DROPLET}\\)`));
    const pin = await pinOf(user);
    const state = await onDroplet(['cat', '/var/lib/plumb/state.json']);
    const workerPid = before.status.apis[0]?.workers[0]?.pid;
    assert.ok(workerPid);

    // A droplet provisioned before the agent had node flags: its unit file (cloud-init's, never rewritten) starts node without them.
    const execStart = () => onDroplet(['systemctl', 'show', 'plumb-agent', '-p', 'ExecStart', '--value']);
    await onDroplet(['sh', '-c', `sed -i 's/ ${AGENT_NODE_FLAGS.join(' ')}//' /etc/systemd/system/plumb-agent.service && systemctl daemon-reload`]);
    const stripped = await execStart();
    assert.ok(!AGENT_NODE_FLAGS.some((flag) => stripped.includes(flag)), `the flags are out of the unit: ${stripped}`);

    const upgraded = await underLoad(() => user.plumb(['upgrade', '--droplet', DROPLET]));
    assert.equal(upgraded.exitCode, 0, upgraded.stderr);
    assert.match(upgraded.stdout, new RegExp(`${DROPLET}: agent upgraded ${OLD} -> ${PLUMB_VERSION}`));

    const after = await statusJson();
    assert.equal(after.agent.version, PLUMB_VERSION);
    assert.equal(after.agent.upgradeAvailable, null);
    assert.match((await user.plumb(['status', DROPLET])).stdout, new RegExp(`agent ${PLUMB_VERSION} \\(up to date\\)`));
    assert.equal(await pinOf(user), pin);
    assert.equal(await onDroplet(['cat', '/var/lib/plumb/state.json']), state);
    // The same R process served before and after: the agent's restart left the workers alone.
    assert.equal(after.status.apis[0]?.workers[0]?.pid, workerPid);
    const ids = after.status.events.map((e) => e.id);
    for (const e of before.status.events) assert.ok(ids.includes(e.id), `event ${e.id} (${e.kind}) was lost`);
    assert.ok(after.status.events.some((e) => e.kind === 'agent-upgraded' && e.detail.includes(`${OLD} -> ${PLUMB_VERSION}`)));
    assert.equal(await onDroplet(['readlink', '/opt/plumb-agent/current']), `versions/${PLUMB_VERSION}`);
    assert.match(await execStart(), /\/opt\/plumb-agent\/current\/bundle\/plumb-agent\.mjs/);
    for (const flag of AGENT_NODE_FLAGS) assert.ok((await execStart()).includes(flag), `the upgraded agent's next start has ${flag}: ${await execStart()}`);

    const again = await user.plumb(['upgrade', '--droplet', DROPLET]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, /already up to date/);
  });

  test('a new agent that fails as it starts is rolled back by the droplet itself; the API answers throughout', async () => {
    const upgraded = await underLoad(() => broken.plumb(user, ['upgrade', '--droplet', DROPLET]));
    assert.equal(upgraded.exitCode, 1);
    assert.match(upgraded.stderr, new RegExp(`agent ${NEXT} did not take over on ${DROPLET}: agent ${NEXT} did not confirm`));
    assert.match(upgraded.stderr, /broken on purpose/);
    const after = await statusJson();
    assert.equal(after.agent.version, PLUMB_VERSION);
    assert.ok(after.status.events.some((e) => e.kind === 'agent-rolled-back'));
    assert.equal(await onDroplet(['readlink', '/opt/plumb-agent/current']), `versions/${PLUMB_VERSION}`);
    assert.deepEqual(JSON.parse((await httpGet(`http://${address}/sum/add?a=1&b=2`)).body), [3]);
  });

  test('a downgrade is refused without --force, and done with it', async () => {
    const refused = await old.plumb(user, ['upgrade', '--droplet', DROPLET]);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, new RegExp(`the agent on ${DROPLET} is version ${PLUMB_VERSION}, newer than this plumb's ${OLD}`));
    assert.match(refused.stderr, /--force/);
    assert.equal((await statusJson()).agent.version, PLUMB_VERSION);

    const forced = await old.plumb(user, ['upgrade', '--droplet', DROPLET, '--force']);
    assert.equal(forced.exitCode, 0, forced.stderr);
    assert.match(forced.stdout, new RegExp(`agent downgraded ${PLUMB_VERSION} -> ${OLD}`));
    const back = await user.plumb(['upgrade', '--droplet', DROPLET]);
    assert.equal(back.exitCode, 0, back.stderr);
    assert.equal((await statusJson()).agent.version, PLUMB_VERSION);
  });
});

describe('plumb keys', () => {
  test("a teammate's key is added, used from another config dir, then revoked and refused (401)", async () => {
    const teammate = await plumbUser(lab);
    const shown = await teammate.plumb(['keys', 'show', '--json']);
    assert.equal(shown.exitCode, 0, shown.stderr);
    const { publicKey, kid } = JSON.parse(shown.stdout) as { publicKey: string; kid: string };

    const exported = await user.plumb(['droplets', 'export', DROPLET]);
    assert.equal(exported.exitCode, 0, exported.stderr);
    assert.doesNotMatch(exported.stdout, /secret|privateJwk|"d"/);
    const file = path.join(teammate.configHome, 'droplets-export.json');
    await writeFile(file, exported.stdout);
    const imported = await teammate.plumb(['droplets', 'import', file]);
    assert.equal(imported.exitCode, 0, imported.stderr);
    assert.equal(await pinOf(teammate), await pinOf(user));

    const notYet = await teammate.plumb(['status', DROPLET]);
    assert.equal(notYet.exitCode, 4);
    assert.match(notYet.stdout + notYet.stderr, /HTTP 401/);

    const added = await user.plumb(['keys', 'add', '--droplet', DROPLET, '--name', 'alice', publicKey]);
    assert.equal(added.exitCode, 0, added.stderr);
    assert.match(added.stdout, new RegExp(`alice\\s+${kid}`));
    const used = await teammate.plumb(['status', DROPLET]);
    assert.equal(used.exitCode, 0, used.stderr);
    assert.match(used.stdout, /sum\s+active/);
    const listed = await teammate.plumb(['keys', 'list', '--droplet', DROPLET]);
    assert.match(listed.stdout, new RegExp(`alice\\s+${kid}  \\(this machine\\)`));

    const own = await teammate.plumb(['keys', 'revoke', '--droplet', DROPLET, 'alice', '--yes']);
    assert.equal(own.exitCode, 1);
    assert.match(own.stderr, /would lock this machine out/);
    const ownerKid = (JSON.parse((await user.plumb(['keys', 'show', '--json'])).stdout) as { kid: string }).kid;
    // A key id may start with "-" (base64url); `--` passes it as the usage hint says.
    const ownerOwn = await user.plumb(['keys', 'revoke', '--droplet', DROPLET, '--yes', '--', ownerKid]);
    assert.equal(ownerOwn.exitCode, 1);
    assert.match(ownerOwn.stderr, /would lock this machine out/);

    const revoked = await user.plumb(['keys', 'revoke', '--droplet', DROPLET, 'alice', '--yes']);
    assert.equal(revoked.exitCode, 0, revoked.stderr);
    assert.doesNotMatch(revoked.stdout, /alice/);
    const refused = await teammate.plumb(['status', DROPLET]);
    assert.equal(refused.exitCode, 4);
    assert.match(refused.stdout + refused.stderr, /HTTP 401/);
    assert.equal((await user.plumb(['status', DROPLET])).exitCode, 0);
  });
});
