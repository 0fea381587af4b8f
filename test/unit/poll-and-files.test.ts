import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pollUntil } from '@plumb/shared';
import { withFileLock, writeFileAtomic, writeIfChanged } from '@plumb/shared/files';

/** A clock that only moves when the poll sleeps: the tests take no time and depend on none. */
function fakeClock() {
  let now = 0;
  const pauses: number[] = [];
  return { pauses, now: () => now, sleep: async (ms: number) => void (pauses.push(ms), (now += ms)) };
}

test('pollUntil: returns the first value the probe gives, after the pauses between tries', async () => {
  const clock = fakeClock();
  const value = await pollUntil((attempt) => (attempt === 3 ? 'ready' : undefined), { timeoutMs: 10_000, intervalMs: 100, clock });
  assert.equal(value, 'ready');
  assert.deepEqual(clock.pauses, [100, 100, 100]);
});

test('pollUntil: gives undefined at the deadline, with a last try at it and no pause past it', async () => {
  const clock = fakeClock();
  const tries: number[] = [];
  const value = await pollUntil(() => void tries.push(clock.now()), { timeoutMs: 250, intervalMs: 100, clock });
  assert.equal(value, undefined);
  assert.deepEqual(tries, [0, 100, 200, 250]);
  assert.deepEqual(clock.pauses, [100, 100, 50]);
});

test('pollUntil: a backoff interval is asked per attempt; a probe that throws ends the poll with its error; false is a value', async () => {
  const clock = fakeClock();
  await pollUntil((attempt) => (attempt === 4 ? true : undefined), { timeoutMs: 10_000, intervalMs: (a) => Math.min(5 * 2 ** a, 20), clock });
  assert.deepEqual(clock.pauses, [5, 10, 20, 20]);
  await assert.rejects(pollUntil(() => Promise.reject(new Error('broken')), { timeoutMs: 1000, intervalMs: 10, clock }), /broken/);
  assert.equal(await pollUntil(() => false, { timeoutMs: 1000, intervalMs: 10, clock }), false);
});

test('pollUntil: an aborted signal ends the wait at once with undefined (real timers)', async () => {
  const abort = new AbortController();
  const started = Date.now();
  setTimeout(() => abort.abort(), 20);
  assert.equal(await pollUntil(() => undefined, { timeoutMs: 60_000, intervalMs: 30_000, signal: abort.signal }), undefined);
  assert.ok(Date.now() - started < 10_000);
});

test('writeFileAtomic: replaces the content whole with the mode asked, and leaves no temp file beside it', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-atomic-'));
  const file = path.join(dir, 'state.json');
  await writeFile(file, 'old');
  assert.equal(await writeFileAtomic(file, 'new content', 0o600), true);
  assert.equal(await readFile(file, 'utf8'), 'new content');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ['state.json']);
});

test('writeFileAtomic: a failed rename leaves what was there as it was, and no temp file', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-atomic-'));
  // A non-empty directory in the way: the temp file is written, then the rename fails.
  const inTheWay = path.join(dir, 'state.json');
  await mkdir(inTheWay);
  await writeFile(path.join(inTheWay, 'inside'), 'kept');
  await assert.rejects(writeFileAtomic(inTheWay, 'x'));
  assert.deepEqual(await readdir(dir), ['state.json']);
  assert.equal(await readFile(path.join(inTheWay, 'inside'), 'utf8'), 'kept');
});

test('writeFileAtomic exclusive: the first writer wins, the second gets false and changes nothing', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-atomic-'));
  const file = path.join(dir, 'key.json');
  const [a, b] = await Promise.all([writeFileAtomic(file, 'a', 0o600, { exclusive: true }), writeFileAtomic(file, 'b', 0o600, { exclusive: true })]);
  assert.deepEqual([a, b].sort(), [false, true]);
  assert.equal(await readFile(file, 'utf8'), a ? 'a' : 'b');
  assert.deepEqual(await readdir(dir), ['key.json']);
});

test('writeIfChanged: writes (and makes the directory) only when the content differs', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-atomic-'));
  const file = path.join(dir, 'sub', 'unit');
  assert.equal(await writeIfChanged(file, 'x', 0o644), true);
  assert.equal(await writeIfChanged(file, 'x', 0o644), false);
  assert.equal(await writeIfChanged(file, 'y', 0o644), true);
  assert.equal((await stat(file)).mode & 0o777, 0o644);
});

test('withFileLock: concurrent changes of one file run one at a time, so none is lost; a lock left by a dead process is taken over', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-lock-'));
  const file = path.join(dir, 'counter');
  await writeFile(file, '0');
  const bump = () => withFileLock(file, async () => {
    const n = Number(await readFile(file, 'utf8'));
    await new Promise((r) => setTimeout(r, 2));
    await writeFileAtomic(file, String(n + 1));
  });
  await Promise.all(Array.from({ length: 20 }, bump));
  assert.equal(await readFile(file, 'utf8'), '20');
  // No process has pid 2**22 + 1 (above the kernel's default pid_max of 4194304).
  await writeFile(`${file}.lock`, String(2 ** 22 + 1));
  await bump();
  assert.equal(await readFile(file, 'utf8'), '21');
  await writeFile(`${file}.lock`, String(process.pid));
  await assert.rejects(withFileLock(file, async () => undefined, 50), (err: Error & { code?: string }) => err.code === 'STATE_LOCKED');
});
