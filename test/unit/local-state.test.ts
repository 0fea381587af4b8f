import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DropletStore, type KnownDroplet } from '@plumb/controller/local/droplets-state';

const record = (id: number): KnownDroplet => ({
  name: `d${id}`, id, uuid: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}`, ipv4: '10.0.0.1', agentPort: 8731,
  fingerprint: 'a'.repeat(64), region: 'sfo3', size: 's-1vcpu-1gb', createdAt: '2026-11-28T00:00:00.000Z',
});

test('droplets.json: 20 saves at once (a provision, a destroy, another shell) lose no record', async () => {
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'plumb-local-')), 'droplets.json');
  await Promise.all(Array.from({ length: 20 }, (_, i) => new DropletStore(file).save(record(i + 1))));
  assert.deepEqual((await new DropletStore(file).list()).map((d) => d.id).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
  await Promise.all([new DropletStore(file).forget(3), new DropletStore(file).forget(7), new DropletStore(file).save(record(30))]);
  assert.equal((await new DropletStore(file).list()).length, 19);
  assert.deepEqual((await readdir(path.dirname(file))).sort(), ['droplets.json'], 'no lock or temporary file is left');
});

test('droplets.json: a lock left by a plumb process that died is taken over', async () => {
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'plumb-local-')), 'droplets.json');
  const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim();
  await writeFile(`${file}.lock`, gone);
  await new DropletStore(file).save(record(1));
  assert.deepEqual((await new DropletStore(file).list()).map((d) => d.id), [1]);
});
