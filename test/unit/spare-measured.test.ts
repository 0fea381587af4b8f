import assert from 'node:assert/strict';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SPARE_MEASURED_MAX_BYTES } from '@plumb/shared';
import { measuredOf, measuredSaved, rememberMeasured, rolloutTook, stopSpare } from '@plumb/agent/ops/spare';
import { parseMeasured, readMeasured, renderMeasured } from '@plumb/agent/ops/spare-measured';

/** auto's measurements across agent restarts (agent ops/spare-measured.ts): a soft file, any bad one read as none. */

const names = new Set(['sum', 'hello']);
const good = { version: 1, apis: { sum: { coldMs: 812, spareMs: 21, lastSpareMs: 30, spareBytes: 83_886_080 }, hello: { coldMs: 640 } } };
const fileIn = async () => path.join(await mkdtemp(path.join(tmpdir(), 'plumb-measured-')), 'spare-measurements.json');

test('spare measurements: a file as the agent writes it reads back as written', () => {
  const read = parseMeasured(JSON.stringify(good), names);
  assert.deepEqual(Object.fromEntries(read), good.apis);
  assert.equal(renderMeasured(read), `${JSON.stringify(good)}\n`);
  // A figure not measured yet is left out, not written as null.
  assert.equal(renderMeasured(new Map([['sum', { coldMs: 5, lastSpareMs: undefined }]])), '{"version":1,"apis":{"sum":{"coldMs":5}}}\n');
});

test('spare measurements: only the APIs the state lists are kept', () => {
  assert.deepEqual([...parseMeasured(JSON.stringify(good), new Set(['sum'])).keys()], ['sum']);
  assert.equal(parseMeasured(JSON.stringify(good), new Set()).size, 0);
});

test('spare measurements: anything but such a file is none (auto starts empty)', () => {
  const bad: Array<[string, string]> = [
    ['not JSON', '{"version": 1, "apis": {'],
    ['empty', ''],
    ['another version', JSON.stringify({ ...good, version: 2 })],
    ['no version', JSON.stringify({ apis: good.apis })],
    ['a negative time', JSON.stringify({ version: 1, apis: { sum: { coldMs: -1 } } })],
    ['a time as text', JSON.stringify({ version: 1, apis: { sum: { coldMs: '812' } } })],
    ['a fractional size', JSON.stringify({ version: 1, apis: { sum: { spareBytes: 1.5 } } })],
    ['an unknown figure', JSON.stringify({ version: 1, apis: { sum: { coldMs: 1, fastest: 2 } } })],
    ['a name that is no API name', JSON.stringify({ version: 1, apis: { '../etc': { coldMs: 1 } } })],
    ['an array', '[]'],
    ['null', 'null'],
  ];
  for (const [what, text] of bad) assert.equal(parseMeasured(text, new Set([...names, '../etc'])).size, 0, what);
});

test('spare measurements: a missing file is none and tidy; one too big, or naming APIs gone, is to be written again', async () => {
  const file = await fileIn();
  assert.deepEqual(await readMeasured(file, names), { measured: new Map(), tidy: true });
  await writeFile(file, renderMeasured(new Map([['sum', { coldMs: 1 }]])));
  assert.deepEqual(await readMeasured(file, names), { measured: new Map([['sum', { coldMs: 1 }]]), tidy: true });
  assert.deepEqual(await readMeasured(file, new Set(['hello'])), { measured: new Map(), tidy: false });
  await writeFile(file, `${JSON.stringify(good)}${' '.repeat(SPARE_MEASURED_MAX_BYTES)}`);
  assert.deepEqual(await readMeasured(file, names), { measured: new Map(), tidy: false });
});

test('spare measurements: remembered at start, written (0600) as rollouts measure, tidied of APIs gone, forgotten with --no-spare or a remove', async () => {
  const file = await fileIn();
  await writeFile(file, JSON.stringify({ version: 1, apis: { ...good.apis, gone: { coldMs: 3 } } }));
  await rememberMeasured(file, ['sum', 'hello']);
  assert.deepEqual(measuredOf('sum'), good.apis.sum);
  await measuredSaved();
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), good, 'the API the state no longer lists is dropped from the file');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  // A one-worker rollout handed to the spare: the quickest handover stays, the last is the new one.
  rolloutTook('sum', 45, true, 1);
  rolloutTook('hello', 700, false, 1);
  await measuredSaved();
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')).apis, { sum: { ...good.apis.sum, lastSpareMs: 45 }, hello: { coldMs: 700 } });
  // forget: what a remove and --no-spare do (stopSpare of an API with no spare stops nothing).
  await stopSpare('sum', { forget: true });
  await measuredSaved();
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')).apis, { hello: { coldMs: 700 } });
  assert.deepEqual(measuredOf('sum'), {});
});
