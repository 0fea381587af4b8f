import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SECRETS_MAX } from '@plumb/shared';
import { Locks } from '@plumb/agent/ops/context';
import { setSecrets } from '@plumb/agent/ops/secrets';
import { ApiRecord, StateStore } from '@plumb/agent/state';

/** The agent's own check of how many secrets an API holds (ops/secrets.ts), as `plumb secrets set` meets it one secret at a time. */

test(`an API holds at most ${SECRETS_MAX} secrets: at the limit it is kept as it is, one more is refused and nothing changes`, async () => {
  const state = await StateStore.open(await mkdtemp(path.join(tmpdir(), 'plumb-secrets-')));
  const secrets = Object.fromEntries(Array.from({ length: SECRETS_MAX }, (_, i) => [`S${i}`, String(i)]));
  const release = '20261128T000000Z-0000';
  await state.update((s) => ({
    ...s,
    apis: { sum: ApiRecord.parse({ name: 'sum', path: '/sum', entrypoint: 'plumber.R', releases: [{ id: release, createdAt: '', files: 1, bytes: 1 }], current: release, workers: [], healthPath: null, secrets, deployedAt: '' }) },
  }));
  const ctx = { state, progress: () => {}, locks: new Locks() };
  const kept = await setSecrets({ name: 'sum', set: { S0: '0' }, unset: [], wait: false }, ctx);
  assert.equal(kept.keys.length, SECRETS_MAX);
  assert.equal(kept.restarted, false, 'an unchanged value restarts nothing');
  await assert.rejects(setSecrets({ name: 'sum', set: { ONE_MORE: 'x' }, unset: [], wait: false }, ctx), {
    code: 'TOO_MANY_SECRETS',
    message: `sum would have ${SECRETS_MAX + 1} secrets; at most ${SECRETS_MAX}`,
    hint: 'unset some first',
  });
  assert.deepEqual(state.get().apis['sum']?.secrets, secrets);
});
