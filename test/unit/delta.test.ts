import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { BUNDLE_MAX_DEPTH, BUNDLE_MAX_ENTRIES, BUNDLE_MAX_EXTRACTED_BYTES, BUNDLE_MAX_PATH_BYTES, DeployRequest, Hello, type BundleFile } from '@plumb/shared';
import { bundleManifest, inspectApiDir, packBundle } from '@plumb/controller/api-dir/bundle';
import { checkManifest } from '@plumb/agent/bundle/delta';
import { BundleRefused, extractBundle } from '@plumb/agent/bundle/extract';

/**
 * Deploys that send only changed bytes, the parts that need no droplet: the file list's checks
 * (the same path rules as tar entries) and the two ends agreeing on every hash and mode.
 * test/e2e/delta-deploy.test.ts drives the whole thing on a lab droplet.
 */

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-delta-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const file = (p: string, size = 1): BundleFile => ({ path: p, sha256: 'a'.repeat(64), size, executable: false });

function refused(files: BundleFile[], message: RegExp): void {
  assert.throws(() => checkManifest(files), (err: unknown) => {
    assert.ok(err instanceof BundleRefused, String(err));
    assert.match(err.message, message);
    return true;
  });
}

test('delta: a file list is refused with the rules of tar entries: outside the release, absolute, backslash, NUL, the release itself', () => {
  refused([file('../../etc/passwd')], /file list entry "\.\.\/\.\.\/etc\/passwd" would land outside the release/);
  refused([file('a/../../x')], /would land outside the release/);
  refused([file('/etc/shadow')], /is an absolute path/);
  refused([file('a\\b')], /has a backslash/);
  refused([file('a\0b')], /has a NUL byte/);
  refused([file('.')], /names the release directory itself/);
});

test('delta: a file list with a path twice, a file under a file, or more bytes than a release may hold is refused', () => {
  refused([file('plumber.R'), file('./plumber.R')], /"\.\/plumber\.R" appears twice/);
  refused([file('data'), file('data/x.csv')], /"data\/x\.csv" is inside "data", which the list has as a file/);
  refused([file('data/deep/x.csv'), file('data')], /is inside "data"/);
  refused([file('a.bin', BUNDLE_MAX_EXTRACTED_BYTES), file('b.bin', 1)], /the release would be over 1024 MiB/);
  assert.deepEqual(checkManifest([file('./R/a.R'), file('plumber.R')]).map((f) => f.path), ['R/a.R', 'plumber.R']);
});

test(`delta: a file list entry deeper than ${BUNDLE_MAX_DEPTH} levels or longer than ${BUNDLE_MAX_PATH_BYTES} bytes is refused, as a tar entry is`, () => {
  const deep = (depth: number) => `${'d/'.repeat(depth - 1)}f.R`;
  assert.equal(checkManifest([file(deep(BUNDLE_MAX_DEPTH))])[0]?.path, deep(BUNDLE_MAX_DEPTH));
  refused([file(deep(BUNDLE_MAX_DEPTH + 1))], new RegExp(`^file list entry "(d/){64}f\\.R" is nested ${BUNDLE_MAX_DEPTH + 1} levels deep; at most ${BUNDLE_MAX_DEPTH}$`));
  // The hostile tree of issue 12 as a file list: refused at its first entry, before any directory is walked.
  refused(Array.from({ length: 1900 }, (_, i) => file(deep(i + 1))), /is nested 65 levels deep/);
  refused([file(`${'n'.repeat(600)}/${'n'.repeat(600)}`)], new RegExp(`has a path of 1201 bytes; at most ${BUNDLE_MAX_PATH_BYTES}$`));
});

test('delta: the schema caps the list and checks each hash', () => {
  const base = { id: 1, type: 'deploy', name: 'sum', forward: false };
  assert.equal(DeployRequest.safeParse({ ...base, manifest: [file('plumber.R')] }).success, true);
  assert.equal(DeployRequest.safeParse({ ...base, manifest: [{ ...file('plumber.R'), sha256: '../x' }] }).success, false);
  assert.equal(DeployRequest.safeParse({ ...base, manifest: Array.from({ length: BUNDLE_MAX_ENTRIES + 1 }, (_, i) => file(`f${i}`)) }).success, false);
});

test('delta: an agent from before file lists says no features, so a controller sends it whole bundles', () => {
  const old = { type: 'hello', agentVersion: '0.1.0', protocol: 1, dropletUuid: '00000000-0000-4000-8000-000000000000', hostname: 'd', enrolled: true, uptimeSeconds: 1, cloudInit: { status: 'done', stage: null, errors: [] }, swap: null, upgrade: null };
  assert.deepEqual(Hello.parse(old).features, []);
});

test("delta: the controller's file list and what the agent's extractor writes agree on every path, hash, size and mode", async (t) => {
  const dir = await scratch(t);
  await mkdir(path.join(dir, 'R/sub'), { recursive: true });
  await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  await writeFile(path.join(dir, 'R/sub/helpers.R'), 'f <- function() 2\n');
  await writeFile(path.join(dir, 'empty.txt'), '');
  await writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\n');
  await chmod(path.join(dir, 'run.sh'), 0o750);
  await writeFile(path.join(dir, 'group-exec.sh'), 'x');
  await chmod(path.join(dir, 'group-exec.sh'), 0o610);
  await symlink('R/sub/helpers.R', path.join(dir, 'link.R'));
  const info = await inspectApiDir(dir);
  const manifest = await bundleManifest(dir, info);
  const releaseDir = path.join(await scratch(t), 'r1');
  const extracted = await extractBundle(packBundle(dir, info), releaseDir);
  const byPath = (a: BundleFile, b: BundleFile) => a.path.localeCompare(b.path);
  assert.deepEqual([...extracted.written].sort(byPath), [...manifest].sort(byPath));
  assert.deepEqual(manifest.filter((f) => f.executable).map((f) => f.path).sort(), ['group-exec.sh', 'run.sh']);
  assert.equal(manifest.find((f) => f.path === 'link.R')?.sha256, manifest.find((f) => f.path === 'R/sub/helpers.R')?.sha256);
});

test('a group deploy packs the whole bundle only when a droplet needs it, and once for all of them', async (t: TestContext) => {
  const { prepareBundle } = await import('@plumb/controller/commands/deploy');
  const { defaultContext } = await import('@plumb/controller/context');
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-lazy-pack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  await writeFile(path.join(dir, 'model.bin'), 'weights');
  const bundle = await prepareBundle({ dir, name: 'lazy', deps: false }, defaultContext(() => {}, { XDG_CONFIG_HOME: dir }), true);
  // Taken away after the group's bundle was prepared: packing now would fail, so nothing was packed yet.
  await rm(path.join(dir, 'model.bin'));
  await assert.rejects(bundle.whole!());
  await writeFile(path.join(dir, 'model.bin'), 'weights');
  const fresh = await prepareBundle({ dir, name: 'lazy', deps: false }, defaultContext(() => {}, { XDG_CONFIG_HOME: dir }), true);
  const [a, b] = await Promise.all([fresh.whole!(), fresh.whole!()]);
  assert.equal(a, b, 'one packing shared by every droplet');
  // Read at once by two droplets' deploys, as --parallel does: each gets the whole of it.
  const read = async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of a()) chunks.push(chunk);
    return Buffer.concat(chunks);
  };
  const [one, two] = await Promise.all([read(), read()]);
  assert.ok(one.length > 0);
  assert.deepEqual(one, two);
  assert.deepEqual(gunzipSync(one).subarray(0, 9).toString(), 'model.bin', 'a gzip tar of the directory');
});

test("a group member whose send stops early leaves the packed bundle whole for the others", async (t: TestContext) => {
  const { prepareBundle } = await import('@plumb/controller/commands/deploy');
  const { defaultContext } = await import('@plumb/controller/context');
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-early-stop-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  // Random bytes, so that the packed bundle is several chunks long.
  await writeFile(path.join(dir, 'model.bin'), randomBytes(512 * 1024));
  const bundle = await prepareBundle({ dir, name: 'early', deps: false }, defaultContext(() => {}, { XDG_CONFIG_HOME: dir }), true);
  const packed = await bundle.whole!();
  const read = async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of packed()) chunks.push(chunk);
    return Buffer.concat(chunks);
  };
  const whole = await read();
  // As sendBundle does when its agent answered first: one chunk, then out of the loop.
  for await (const chunk of packed()) {
    assert.ok(chunk.length > 0 && chunk.length < whole.length);
    break;
  }
  assert.deepEqual(await read(), whole, 'read whole after another reader stopped early');
});

test("a group deploy's packed bundle lets go of its descriptor on close(), also when packing failed; a failed open leaves no temporary directory", async (t: TestContext) => {
  const { prepareBundle } = await import('@plumb/controller/commands/deploy');
  const { defaultContext } = await import('@plumb/controller/context');
  const fds = async () => (await readdir('/proc/self/fd')).length;
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-close-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  await writeFile(path.join(dir, 'model.bin'), randomBytes(256 * 1024));
  const prepare = () => prepareBundle({ dir, name: 'closed', deps: false, full: true }, defaultContext(() => {}, { XDG_CONFIG_HOME: dir }), true);
  const open = await fds();

  const bundle = await prepare();
  for await (const chunk of (await bundle.whole!())()) assert.ok(chunk.length > 0);
  assert.equal(await fds(), open + 1, 'the packed file is open while the group deploys');
  await bundle.close();
  assert.equal(await fds(), open);
  await bundle.close();
  await assert.rejects(bundle.whole!(), /read after it was closed/);

  // Never packed (every member took a file list): nothing to close.
  await (await prepare()).close();
  // A packing that fails (a file gone) closes what it opened.
  const failing = await prepare();
  await rm(path.join(dir, 'model.bin'));
  await assert.rejects(failing.whole!(), /ENOENT/, "tar's own error, not one of closing the descriptor twice");
  assert.equal(await fds(), open);
  await failing.close();
  await writeFile(path.join(dir, 'model.bin'), 'weights');

  // The temporary file cannot be opened: its directory goes all the same.
  const scratchTmp = await mkdtemp(path.join(tmpdir(), 'plumb-close-tmp-'));
  t.after(() => rm(scratchTmp, { recursive: true, force: true }));
  const tmpBefore = process.env.TMPDIR;
  process.env.TMPDIR = scratchTmp;
  t.after(() => (tmpBefore === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = tmpBefore)));
  // A mock: running out of descriptors on demand is not something a real part shows.
  const openSync = t.mock.method(fs, 'openSync', () => {
    throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
  });
  syncBuiltinESMExports();
  try {
    const unopened = await prepare();
    await assert.rejects(unopened.whole!(), /EMFILE/);
    await unopened.close();
  } finally {
    openSync.mock.restore();
    syncBuiltinESMExports();
  }
  assert.deepEqual(await readdir(scratchTmp), []);
});
