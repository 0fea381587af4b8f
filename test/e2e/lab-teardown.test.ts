import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { createApiClient } from 'dots-wrapper';
import { execa } from 'execa';
import { alive } from '../lab/host.js';
import { listRecords } from '../lab/droplets/records.js';
import { listInstances } from '../lab/instances.js';
import { dataDir } from '../lab/paths.js';
import { leftovers, waitActive } from './helpers.js';

const LAB_CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '../lab/cli.js');
const lab = (...args: string[]) => execa(process.execPath, [LAB_CLI, ...args], { reject: false });

/** Starts `lab up` as a person would, and reads the token and URL it prints. */
async function labUp(instance: string) {
  const child = spawn(process.execPath, [LAB_CLI, 'up', '--instance', instance, '--port', '0', '--no-acme'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => (out += chunk));
  const deadline = Date.now() + 600_000;
  while (!/Ctrl-C/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`lab up did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const token = /DIGITALOCEAN_ACCESS_TOKEN=(\S+)/.exec(out)?.[1];
  const endpoint = /PLUMB_DIGITALOCEAN_API_URL=(\S+)/.exec(out)?.[1];
  assert.ok(token && endpoint, out);
  return { child, api: createApiClient({ token, endpoint }) };
}

/** `lab up` with one booted droplet, and the record the lab keeps of it. */
async function labUpWithDroplet(instance: string, name: string) {
  const { child, api } = await labUp(instance);
  const created = await api.droplet.createDroplet({ name, region: 'nyc3', size: 's-1vcpu-1gb', image: 'debian-13-x64' });
  await waitActive(api, created.data.droplet.id);
  const [record] = await listRecords(instance);
  assert.ok(record);
  return { child, record };
}

test('a lab whose process was killed mid-test is removed by a later `lab down`, and `lab down` twice succeeds', async () => {
  const { child, record } = await labUpWithDroplet('crashed', 'orphan');

  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.deepEqual(await leftovers(record.index, record.dir), ['netns', 'veth', 'iptables nat', 'iptables filter', 'mount', 'files', 'nspawn'], 'the killed lab left its droplet running');

  const first = await lab('down', '--instance', 'crashed');
  assert.equal(first.exitCode, 0, first.stderr);
  assert.match(first.stdout, /removed droplet orphan/);
  assert.deepEqual(await leftovers(record.index, record.dir), []);
  assert.deepEqual(await listRecords('crashed'), []);
  assert.equal(existsSync(path.join(dataDir(), 'crashed')), false);

  const second = await lab('down', '--instance', 'crashed');
  assert.equal(second.exitCode, 0, second.stderr);
  assert.match(second.stdout, /nothing to remove/);
});

test('Ctrl-C on `lab up` deletes its droplets and leaves nothing behind', async () => {
  const { child, record } = await labUpWithDroplet('interrupted', 'short-lived');
  child.kill('SIGINT');
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0);
  assert.deepEqual(await leftovers(record.index, record.dir), []);
  assert.deepEqual(await listRecords('interrupted'), []);
  assert.equal((await listInstances()).some((i) => i.instance === 'interrupted'), false);
});

test('`lab down` for the whole host, twice in a row, succeeds and leaves no lab namespace', async (t) => {
  const others = (await listInstances()).filter((i) => alive(i.pid));
  if (others.length > 0) return t.skip(`another lab is running here (${others.map((o) => o.instance).join(', ')}); a host-wide down would stop it`);
  for (let i = 0; i < 2; i++) {
    const down = await lab('down');
    assert.equal(down.exitCode, 0, down.stderr);
  }
  const { stdout } = await execa('ip', ['netns', 'list']);
  assert.doesNotMatch(stdout, /plumb-lab-/);
  assert.equal(existsSync(dataDir()), false);
});
