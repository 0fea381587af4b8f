import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { createApiClient } from 'dots-wrapper';
import { execa } from 'execa';
import { RETRY_MAX_ATTEMPTS } from '@plumb/controller/digitalocean/retry';
import { startDoStandin, type FaultSpec } from '../lab/do-standin/index.js';
import { PLUMB_CLI } from '../e2e/plumb.js';
import { ScriptedMachines } from './do-test-machines.js';

/**
 * DigitalOcean failing while `plumb destroy` runs (issue 12): the real CLI against the lab's
 * DigitalOcean stand-in, with faults aimed at DELETE /v2/droplets/ID. A short failure is retried;
 * a long one ends with a clear error and plumb still knows the droplet (it still exists); a second
 * destroy finishes the job. No nspawn machine is needed: the stand-in's machines are scripted.
 */

process.env.NO_PROXY = '127.0.0.1,localhost';
const TOKEN = 'lab-token';

interface Setup {
  plumb: (args: string[]) => Promise<{ exitCode: number; stdout: string; stderr: string }>;
  fault: (spec: FaultSpec) => Promise<void>;
  exists: () => Promise<boolean>;
  known: () => Promise<string[]>;
}

async function setup(t: TestContext): Promise<Setup> {
  const machines = new ScriptedMachines();
  const standin = await startDoStandin({ tokens: [TOKEN], machines });
  t.after(() => standin.close());
  const client = createApiClient({ token: TOKEN, endpoint: standin.endpoint });
  const { droplet } = (await client.droplet.createDroplet({ size: 's-1vcpu-1gb', image: 'debian-13-x64', region: 'fra1', name: 'doomed' })).data;
  machines.boot(droplet.id);
  const configHome = await mkdtemp(path.join(tmpdir(), 'plumb-destroy-'));
  t.after(() => rm(configHome, { recursive: true, force: true }));
  await mkdir(path.join(configHome, 'plumb'), { recursive: true });
  const record = { name: 'doomed', id: droplet.id, uuid: randomUUID(), ipv4: '10.213.1.2', agentPort: 8731, fingerprint: null, region: 'fra1', size: 's-1vcpu-1gb', createdAt: new Date().toISOString() };
  await writeFile(path.join(configHome, 'plumb/droplets.json'), JSON.stringify({ version: 1, droplets: [record] }), { mode: 0o600 });
  const env = { DIGITALOCEAN_ACCESS_TOKEN: TOKEN, PLUMB_DIGITALOCEAN_API_URL: standin.endpoint, XDG_CONFIG_HOME: configHome, XDG_CACHE_HOME: path.join(configHome, 'cache'), NO_PROXY: '127.0.0.1,localhost' };
  return {
    plumb: async (args) => {
      const r = await execa(process.execPath, [PLUMB_CLI, ...args], { env, reject: false, timeout: 120_000, stdin: 'ignore' });
      return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
    },
    fault: async (spec) => {
      const res = await fetch(`${standin.url}/lab/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
      assert.equal(res.status, 201, await res.text());
    },
    exists: async () => (await client.droplet.listDroplets({})).data.droplets.some((d) => d.id === droplet.id),
    known: async () => (JSON.parse(await readFile(path.join(configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: Array<{ name: string }> }).droplets.map((d) => d.name),
  };
}

for (const status of [500, 503] as const) {
  test(`destroy: two ${status} answers to the DELETE are retried, and the droplet is destroyed and forgotten`, async (t) => {
    const s = await setup(t);
    assert.deepEqual(await s.known(), ['doomed']);
    await s.fault({ status, method: 'DELETE', count: 2 });
    const r = await s.plumb(['destroy', 'doomed', '--yes']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /destroyed droplet doomed/);
    assert.equal(await s.exists(), false);
    assert.deepEqual(await s.known(), []);
  });
}

test('destroy: DigitalOcean failing on every try ends with one clear error; plumb still knows the droplet, which still exists; a second destroy finishes', async (t) => {
  const s = await setup(t);
  // Every try of one run; the fault is used up by then, as a passing outage would be.
  await s.fault({ status: 503, method: 'DELETE', count: RETRY_MAX_ATTEMPTS });
  const failed = await s.plumb(['destroy', 'doomed', '--yes']);
  assert.equal(failed.exitCode, 1, failed.stderr);
  assert.match(failed.stderr, new RegExp(`DigitalOcean is failing \\(503 Service Unavailable\\) after ${RETRY_MAX_ATTEMPTS} attempts`));
  assert.equal(await s.exists(), true, 'DigitalOcean still has it');
  assert.deepEqual(await s.known(), ['doomed'], 'so plumb still knows it');
  await t.test('the second destroy', async () => {
    const again = await s.plumb(['destroy', 'doomed', '--yes']);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.equal(await s.exists(), false);
    assert.deepEqual(await s.known(), []);
  });
});

test('destroy: a 429 whose reset is an hour away ends at once, saying when to come back; nothing changed; a second destroy finishes', async (t) => {
  const s = await setup(t);
  await s.fault({ status: 429, method: 'DELETE', count: 1, retryAfter: 3600 });
  const limited = await s.plumb(['destroy', 'doomed', '--yes']);
  assert.equal(limited.exitCode, 1, limited.stderr);
  assert.match(limited.stderr, /rate limit|429|too many/i);
  assert.equal(await s.exists(), true);
  assert.deepEqual(await s.known(), ['doomed']);
  const again = await s.plumb(['destroy', 'doomed', '--yes']);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.equal(await s.exists(), false);
  assert.deepEqual(await s.known(), []);
});
