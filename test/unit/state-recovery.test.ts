import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { StateStore } from '@plumb/agent/state';
import { parseInstanceEnv } from '@plumb/agent/state-recovery';
import { renderInstanceEnv } from '@plumb/agent/render/systemd';

/** A droplet's disk as the agent's operations leave it: two releases of `sum`, one worker on the newer. */
async function droplet(state: string | undefined, prev?: object) {
  const root = await mkdtemp(path.join(tmpdir(), 'plumb-recovery-'));
  const stateDir = path.join(root, 'lib');
  const apiRoot = path.join(root, 'plumber');
  const instancesDir = path.join(stateDir, 'instances');
  for (const id of ['20261125T190000Z-aaaa', '20261125T190100Z-bbbb']) {
    await mkdir(path.join(apiRoot, 'sum/releases', id), { recursive: true });
    await writeFile(path.join(apiRoot, 'sum/releases', id, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  }
  await symlink('releases/20261125T190100Z-bbbb', path.join(apiRoot, 'sum/current'));
  // What `remove --keep-files` leaves: files, no workers.
  await mkdir(path.join(apiRoot, 'kept/releases/20261125T180000Z-cccc'), { recursive: true });
  await symlink('releases/20261125T180000Z-cccc', path.join(apiRoot, 'kept/current'));
  await mkdir(instancesDir, { recursive: true });
  await writeFile(path.join(instancesDir, 'sum@9001.env'), renderInstanceEnv('/var/plumber/sum/releases/20261125T190100Z-bbbb', { TOKEN: 'a"b$c\\d' }));
  if (state !== undefined) await writeFile(path.join(stateDir, 'state.json'), state);
  if (prev) await writeFile(path.join(stateDir, 'state.json.backup'), JSON.stringify(prev));
  return { stateDir, roots: { apiRoot, instancesDir } };
}

const good = {
  version: 1,
  enrolledAt: '2026-11-25T19:00:00.000Z',
  apis: {
    sum: {
      name: 'sum', path: '/calc', entrypoint: 'plumber.R', current: '20261125T190000Z-aaaa', workers: [{ port: 9000, release: '20261125T190000Z-aaaa' }],
      releases: [{ id: '20261125T190000Z-aaaa', createdAt: '2026-11-25T19:00:00.000Z', files: 1, bytes: 30, env: {} }],
      healthPath: null, deployedAt: '2026-11-25T19:00:00.000Z',
    },
  },
  forward: 'sum',
};

describe('a damaged state.json', () => {
  test('is set aside, and the state rebuilt from the last good copy corrected by the disk', async () => {
    const { stateDir, roots } = await droplet('{"version": 1, "apis": {', good);
    const store = await StateStore.open(stateDir, { enrolled: true, roots });
    const api = store.get().apis['sum'];
    assert.ok(api);
    assert.equal(api.path, '/calc', 'the URL path comes from the last good copy');
    assert.equal(store.get().forward, 'sum');
    assert.equal(api.current, '20261125T190100Z-bbbb', 'the live release is what current points at');
    assert.deepEqual(api.workers, [{ port: 9001, release: '20261125T190100Z-bbbb' }]);
    assert.deepEqual(api.releases.map((r) => r.id), ['20261125T190000Z-aaaa', '20261125T190100Z-bbbb']);
    assert.deepEqual(api.releases[1]?.env, { TOKEN: 'a"b$c\\d' }, 'a release keeps the --env its worker ran with');
    const files = await readdir(stateDir);
    const kept = files.find((f) => f.startsWith('state.json.damaged-'));
    assert.ok(kept, files.join(' '));
    assert.equal(await readFile(path.join(stateDir, kept), 'utf8'), '{"version": 1, "apis": {');
    assert.match(store.recovered?.detail ?? '', /damaged .*rebuilt from the last good copy and what is on disk: sum/);
    const reread = await StateStore.open(stateDir, { enrolled: true, roots });
    assert.equal(reread.recovered, undefined, 'the rebuilt state was saved');
    assert.equal(reread.get().apis['sum']?.current, '20261125T190100Z-bbbb');
  });

  test('without a good copy, the APIs on disk come back at /NAME and an enrolled agent stays enrolled', async () => {
    const { stateDir, roots } = await droplet(JSON.stringify({ version: 2 }));
    const store = await StateStore.open(stateDir, { enrolled: true, roots });
    assert.equal(store.get().apis['sum']?.path, '/sum');
    // The default a deploy gives (auto), not a record from before auto (none).
    assert.equal(store.get().apis['sum']?.sparePolicy, 'auto');
    assert.deepEqual(Object.keys(store.get().apis), ['sum'], 'the files of a removed API do not bring it back');
    assert.notEqual(store.get().enrolledAt, null);
    assert.match(store.recovered?.detail ?? '', /version: .*forward, HTTPS and webhook settings must be given again/);
  });

  test('without a good copy, secrets come back as the API\'s secrets (its workers\' env files mark them), not as --env', async () => {
    const { stateDir, roots } = await droplet('garbage');
    await writeFile(path.join(roots.instancesDir, 'sum@9001.env'), renderInstanceEnv('/var/plumber/sum/releases/20261125T190100Z-bbbb', { MODE: 'plain', TOKEN: 'old --env' }, undefined, { TOKEN: 's3cret' }));
    const api = (await StateStore.open(stateDir, { enrolled: true, roots })).get().apis['sum'];
    assert.deepEqual(api?.secrets, { TOKEN: 's3cret' });
    assert.deepEqual(api?.releases.find((r) => r.id === '20261125T190100Z-bbbb')?.env, { MODE: 'plain' });
  });

  test('every save is copied to state.json.backup, so the last change survives a damaged state.json', async () => {
    const { stateDir, roots } = await droplet(JSON.stringify(good));
    const store = await StateStore.open(stateDir, { enrolled: true, roots });
    await store.update((s) => ({ ...s, apis: { sum: { ...s.apis['sum']!, path: '/newer' } } }));
    assert.equal(await readFile(path.join(stateDir, 'state.json.backup'), 'utf8'), await readFile(path.join(stateDir, 'state.json'), 'utf8'));
    await writeFile(path.join(stateDir, 'state.json'), 'garbage');
    assert.equal((await StateStore.open(stateDir, { enrolled: true, roots })).get().apis['sum']?.path, '/newer');
  });
});

test('a damaged state.json: a worker draining on the live release stays draining, and one left on an older release is drained, never made live', async () => {
  const { stateDir, roots } = await droplet('garbage', {
    ...good,
    apis: { sum: { ...good.apis.sum, current: '20261125T190100Z-bbbb', workers: [{ port: 9002, release: '20261125T190100Z-bbbb' }], draining: [{ port: 9001, release: '20261125T190100Z-bbbb', until: '2026-11-25T19:05:00.000Z' }] } },
  });
  await writeFile(path.join(roots.instancesDir, 'sum@9002.env'), renderInstanceEnv('/var/plumber/sum/releases/20261125T190100Z-bbbb'));
  await writeFile(path.join(roots.instancesDir, 'sum@9000.env'), renderInstanceEnv('/var/plumber/sum/releases/20261125T190000Z-aaaa'));
  const api = (await StateStore.open(stateDir, { enrolled: true, roots })).get().apis['sum'];
  assert.deepEqual(api?.workers, [{ port: 9002, release: '20261125T190100Z-bbbb' }]);
  assert.deepEqual(api?.draining.map((w) => [w.port, w.release]), [[9000, '20261125T190000Z-aaaa'], [9001, '20261125T190100Z-bbbb']]);
  assert.equal(api?.draining.find((w) => w.port === 9001)?.until, '2026-11-25T19:05:00.000Z');
});

test('parseInstanceEnv reads back what renderInstanceEnv wrote, quotes and all', () => {
  const env = { A: '', B: 'x y', C: '"$`\\', D: "it's" };
  assert.deepEqual(parseInstanceEnv(renderInstanceEnv('/var/plumber/sum/releases/20261125T190100Z-bbbb', env)), { release: '20261125T190100Z-bbbb', env, secrets: {} });
  const generation = '/var/plumber/sum/library/g-0123456789abcdef';
  assert.deepEqual(parseInstanceEnv(renderInstanceEnv('/var/plumber/sum/releases/20261125T190100Z-bbbb', env, generation)), { release: '20261125T190100Z-bbbb', library: 'g-0123456789abcdef', env, secrets: {} });
  assert.deepEqual(parseInstanceEnv(renderInstanceEnv('/var/plumber/sum/releases/20261125T190100Z-bbbb', env, null, { B: 'secret', S: 'x"$' })), { release: '20261125T190100Z-bbbb', library: null, env: { A: '', C: '"$`\\', D: "it's" }, secrets: { B: 'secret', S: 'x"$' } });
});
