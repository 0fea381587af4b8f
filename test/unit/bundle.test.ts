import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { linkSync } from 'node:fs';
import { access, chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Readable } from 'node:stream';
import { createGzip, gzipSync } from 'node:zlib';
import { list } from 'tar';
import { BUNDLE_MAX_DEPTH, BUNDLE_MAX_ENTRIES, BUNDLE_MAX_EXTRACTED_BYTES, BUNDLE_MAX_PATH_BYTES, BUNDLE_MAX_RATIO, ValidationError, type PlumbError } from '@plumb/shared';
import { bundleTooLarge, inspectApiDir, packBundle } from '@plumb/controller/api-dir/bundle';
import { BundleRefused, DEFAULT_EXTRACT_LIMITS, extractBundle } from '@plumb/agent/bundle/extract';
import { pax, rawHeader, rawTar } from '../cases/raw-tar.js';

/**
 * Bundles end to end on this machine: the controller's packing of an API directory, the
 * agent's extraction, and every hostile archive the agent must refuse without writing a byte
 * outside the release (or leaving the release behind).
 */

async function scratch(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `plumb-${prefix}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const exists = (p: string) => access(p).then(() => true, () => false);

/** A buffer as a WebSocket would deliver it: in pieces. */
async function* chunked(buf: Buffer, size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

/** Every path under `dir` (POSIX, sorted) with what it is. */
async function tree(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(`${child}/`, ...(await tree(dir, child)));
    else out.push(e.isFile() ? child : `${child} (not a file)`);
  }
  return out.sort();
}

const plumberR = '#* @get /hi\nfunction() "hi"\n';

// --- a release dir next to sentinels: nothing may appear outside it ------------------------

interface Place {
  base: string;
  releaseDir: string;
  /** Paths a hostile bundle aims at; each must stay absent. */
  sentinels: string[];
}

async function place(t: TestContext): Promise<Place> {
  const base = await scratch(t, 'release');
  await mkdir(path.join(base, 'releases'));
  return { base, releaseDir: path.join(base, 'releases', 'r1'), sentinels: [path.join(base, 'x'), path.join(base, 'releases', 'x'), path.join(base, 'pwned')] };
}

async function assertRefused(t: TestContext, bundle: Buffer | AsyncIterable<Buffer>, message: RegExp, limits = DEFAULT_EXTRACT_LIMITS): Promise<void> {
  const p = await place(t);
  const source = Buffer.isBuffer(bundle) ? chunked(bundle) : bundle;
  await assert.rejects(extractBundle(source, p.releaseDir, limits), (err: unknown) => {
    assert.ok(err instanceof BundleRefused, `expected BundleRefused, got ${String(err)}`);
    assert.equal(err.code, 'BUNDLE_REFUSED');
    assert.match(err.message, message);
    assert.doesNotMatch(err.message, /\n/);
    return true;
  });
  assert.equal(await exists(p.releaseDir), false, 'the release directory is removed');
  for (const s of p.sentinels) assert.equal(await exists(s), false, `${s} was not written`);
  assert.deepEqual(await readdir(path.join(p.base, 'releases')), []);
}

// --- round trip -----------------------------------------------------------------------------

async function apiDir(t: TestContext): Promise<string> {
  const dir = await scratch(t, 'api');
  const files: Record<string, string> = {
    'plumber.R': plumberR,
    'data/x.csv': 'a,b\n1,2\n',
    'renv.lock': '{}',
    'renv/activate.R': '# renv',
    'renv/library/R-4.5/x86_64/jsonlite/DESCRIPTION': 'Package: jsonlite',
    'secret.txt': 'do not send',
    'cache/big.bin': 'cached',
    '.git/HEAD': 'ref: refs/heads/main',
    '.Rproj.user/state': 'x',
    '.Rhistory': 'q()',
    '.RData': 'RDX3',
    'run.sh': '#!/bin/sh\n',
    '.plumbignore': '# not for the droplet\nsecret.txt\ncache/\n',
  };
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), body);
  }
  await chmod(path.join(dir, 'run.sh'), 0o755);
  await symlink('data/x.csv', path.join(dir, 'link.csv'));
  await symlink('data', path.join(dir, 'linkdir'));
  return dir;
}

test('bundle: an API directory goes through packBundle and extractBundle unchanged, ignored files left out, links as files', async (t) => {
  const dir = await apiDir(t);
  const info = await inspectApiDir(dir);
  assert.equal(info.entrypoint, 'plumber.R');
  assert.deepEqual(info.files, ['data/x.csv', 'link.csv', 'linkdir/x.csv', 'plumber.R', 'renv.lock', 'renv/activate.R', 'run.sh']);

  const p = await place(t);
  const result = await extractBundle(packBundle(dir, info), p.releaseDir);
  assert.equal(result.files, info.files.length);
  assert.ok(result.compressedBytes > 0);

  assert.deepEqual(await tree(p.releaseDir), ['data/', 'data/x.csv', 'link.csv', 'linkdir/', 'linkdir/x.csv', 'plumber.R', 'renv.lock', 'renv/', 'renv/activate.R', 'run.sh']);
  let bytes = 0;
  for (const rel of info.files) {
    const got = await readFile(path.join(p.releaseDir, rel));
    assert.deepEqual(got, await readFile(path.join(dir, rel)), rel);
    bytes += got.length;
    const st = await lstat(path.join(p.releaseDir, rel));
    assert.ok(st.isFile(), `${rel} is a regular file`);
    assert.equal(st.mode & 0o7777, rel === 'run.sh' ? 0o755 : 0o644, rel);
    assert.equal(st.uid, process.getuid?.());
  }
  assert.equal(result.bytes, bytes);
  assert.equal((await stat(p.releaseDir)).mode & 0o7777, 0o755);
  assert.equal((await stat(path.join(p.releaseDir, 'data'))).mode & 0o7777, 0o755);
});

test('bundle: a bundle the droplet refused as too large is said with its largest files and what to do instead', async (t) => {
  const dir = await scratch(t, 'huge');
  await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  await mkdir(path.join(dir, 'data'));
  // Sparse: the sizes a user's 500 MB API would have, without writing them.
  await writeFile(path.join(dir, 'data/model.bin'), '');
  await truncate(path.join(dir, 'data/model.bin'), 500 * 1024 * 1024);
  await writeFile(path.join(dir, 'data/lookup.csv'), '');
  await truncate(path.join(dir, 'data/lookup.csv'), 40 * 1024 * 1024);
  const refused = await bundleTooLarge(dir, 'huge', (await inspectApiDir(dir)).files);
  assert.equal(refused.code, 'BUNDLE_TOO_LARGE');
  assert.equal(refused.message, 'the bundle is over 200 MiB compressed, the most a droplet takes (nothing changed there); its largest files: data/model.bin (500 MiB), data/lookup.csv (40 MiB)');
  assert.equal(refused.hint, 'add large data to .plumbignore (e.g. data/model.bin) and have the API fetch it when it starts, into /var/plumber/huge/data/ (kept across releases)');
});

test(`bundle: a directory whose files total over ${BUNDLE_MAX_EXTRACTED_BYTES / 1024 / 1024} MiB (what a release may hold) is refused before any droplet is looked for; one at that total is not`, async (t) => {
  const { deploy } = await import('@plumb/controller/commands/deploy');
  const { defaultContext } = await import('@plumb/controller/context');
  const dir = await scratch(t, 'over-release');
  await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  await mkdir(path.join(dir, 'data'));
  // Sparse: the sizes, without writing them. The rest of the limit goes to the model.
  const csv = 100 * 1024 * 1024;
  const model = BUNDLE_MAX_EXTRACTED_BYTES - csv - (await stat(path.join(dir, 'plumber.R'))).size;
  await writeFile(path.join(dir, 'data/lookup.csv'), '');
  await truncate(path.join(dir, 'data/lookup.csv'), csv);
  await writeFile(path.join(dir, 'data/model.bin'), '');
  await truncate(path.join(dir, 'data/model.bin'), model);
  // No droplet known: a deploy that gets past the check stops at looking one up (--full: nothing hashed meanwhile).
  const ctx = defaultContext(() => {}, { XDG_CONFIG_HOME: dir });
  await assert.rejects(deploy({ dir, name: 'big', deps: false, full: true }, ctx), (err: PlumbError) => err.code === 'DROPLET_AMBIGUOUS');
  await truncate(path.join(dir, 'data/model.bin'), model + 1);
  await assert.rejects(deploy({ dir, name: 'big', deps: false }, ctx), (err: PlumbError) => {
    assert.equal(err.code, 'BUNDLE_TOO_LARGE');
    assert.equal(err.message, `the API's files total ${BUNDLE_MAX_EXTRACTED_BYTES + 1} bytes, over the ${BUNDLE_MAX_EXTRACTED_BYTES} bytes (1024 MiB) a release may hold on a droplet (nothing was sent); its largest files: data/model.bin (924 MiB), data/lookup.csv (100 MiB)`);
    assert.equal(err.hint, 'add large data to .plumbignore (e.g. data/model.bin) and have the API fetch it when it starts, into /var/plumber/big/data/ (kept across releases)');
    return true;
  });
});

test('bundle: the packed stream holds only regular files, with no owner names', async (t) => {
  const dir = await apiDir(t);
  const info = await inspectApiDir(dir);
  const tgz = await collect(packBundle(dir, info));
  const x = await scratch(t, 'list');
  await writeFile(path.join(x, 'b.tgz'), tgz);
  const seen: { path: string; type: string; uname: string | undefined }[] = [];
  await list({ file: path.join(x, 'b.tgz'), onReadEntry: (e) => seen.push({ path: e.path, type: e.type, uname: e.uname }) });
  assert.deepEqual(seen.map((e) => e.path).sort(), info.files);
  for (const e of seen) {
    assert.equal(e.type, 'File', e.path);
    assert.ok(!e.uname, `${e.path} carries no owner name`);
  }
});

test('bundle: a big file arrives whole through small chunks', async (t) => {
  const body = randomBytes(3 * 1024 * 1024 + 17);
  const p = await place(t);
  const result = await extractBundle(chunked(gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, { path: 'data/blob.bin', body }])), 4096), p.releaseDir);
  assert.equal(result.files, 2);
  assert.deepEqual(await readFile(path.join(p.releaseDir, 'data/blob.bin')), body);
});

test('bundle: a stream delivered one byte at a time is extracted', async (t) => {
  const p = await place(t);
  await extractBundle(chunked(gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }])), 1), p.releaseDir);
  assert.equal(await readFile(path.join(p.releaseDir, 'plumber.R'), 'utf8'), plumberR);
});

test('bundle: pax global headers and long names are understood', async (t) => {
  const long = `${'d'.repeat(80)}/${'e'.repeat(80)}/file.R`;
  const tar = rawTar([
    { path: 'pax_global_header', type: 'global', body: pax({ comment: 'made by hand' }) },
    { path: 'PaxHeader/long', type: 'pax', body: pax({ path: long }) },
    { path: 'truncated-name', body: 'x <- 1\n' },
    { path: 'plumber.R', body: plumberR, mode: 0o775, uid: 4242 },
  ]);
  const p = await place(t);
  await extractBundle(chunked(gzipSync(tar)), p.releaseDir);
  assert.equal(await readFile(path.join(p.releaseDir, long), 'utf8'), 'x <- 1\n');
  assert.equal(await exists(path.join(p.releaseDir, 'truncated-name')), false);
  const st = await stat(path.join(p.releaseDir, 'plumber.R'));
  assert.equal(st.mode & 0o7777, 0o755, 'an exec bit in the archive gives 0755, nothing else');
  assert.equal(st.uid, process.getuid?.(), 'ownership does not come from the archive');
});

test('bundle: explicit directory entries and ./ prefixes are fine', async (t) => {
  const p = await place(t);
  await extractBundle(chunked(gzipSync(rawTar([{ path: './data/', type: 'dir', mode: 0o777 }, { path: './data/x.csv', body: '1' }, { path: './plumber.R', body: plumberR }]))), p.releaseDir);
  assert.deepEqual(await tree(p.releaseDir), ['data/', 'data/x.csv', 'plumber.R']);
  assert.equal((await stat(path.join(p.releaseDir, 'data'))).mode & 0o7777, 0o755);
});

// --- refusals ------------------------------------------------------------------------------

test('bundle refused: an entry climbing out with ../', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, { path: '../x', body: 'pwned' }])), /^bundle entry "\.\.\/x" would land outside the release$/);
});

test('bundle refused: an entry climbing out through a directory (a/../../x)', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'a/../../x', body: 'pwned' }])), /"a\/\.\.\/\.\.\/x" would land outside the release/);
});

test('bundle refused: an absolute path', async (t) => {
  const p = await place(t);
  const target = p.sentinels[0] ?? '';
  await assertRefused(t, gzipSync(rawTar([{ path: target, body: 'pwned' }])), /is an absolute path/);
  assert.equal(await exists(target), false);
});

test('bundle refused: a symbolic link pointing inside', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, { path: 'link.R', type: 'symlink', linkpath: 'plumber.R' }])), /^bundle entry "link\.R" is a symbolic link \(to "plumber\.R"\); a bundle holds only files and directories$/);
});

test('bundle refused: a symbolic link pointing outside, then a file through it', async (t) => {
  const p = await place(t);
  await assertRefused(t, gzipSync(rawTar([{ path: 'evil', type: 'symlink', linkpath: p.base }, { path: 'evil/pwned', body: 'pwned' }])), /"evil" is a symbolic link/);
});

test('bundle refused: a hard link', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'passwd', type: 'link', linkpath: '/etc/passwd' }])), /"passwd" is a hard link \(to "\/etc\/passwd"\)/);
});

test('bundle refused: a character device', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'null', type: 'char' }])), /"null" is a character device/);
});

test('bundle refused: a block device', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'sda', type: 'block' }])), /"sda" is a block device/);
});

test('bundle refused: a FIFO', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'pipe', type: 'fifo' }])), /"pipe" is a FIFO/);
});

test('bundle refused: an entry type node-tar itself skips (a tape volume header)', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, { path: 'vol', type: 'volume' }])), /^bundle entry "vol" is of type TapeVolumeHeader; a bundle holds only files and directories$/);
});

test('bundle refused: a path with a backslash', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: '..\\x', body: 'pwned' }])), /has a backslash in its path/);
});

test('bundle refused: an entry naming the release directory itself', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: './', type: 'dir' }])), /"\.\/" names the release directory itself/);
});

test('bundle refused: a file under a path the bundle has as a file', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'a', body: 'file' }, { path: 'a/b', body: 'x' }])), /"a\/b" is inside "a", which the bundle has as a file/);
});

test('bundle refused: the same file twice', async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, { path: 'plumber.R', body: 'other' }])), /"plumber\.R" appears twice/);
});

test('bundle refused: over maxBytes compressed', async (t) => {
  const tgz = gzipSync(rawTar([{ path: 'noise.bin', body: randomBytes(64 * 1024) }]));
  await assertRefused(t, tgz, /^the bundle is over 10000 bytes compressed$/, { ...DEFAULT_EXTRACT_LIMITS, maxBytes: 10_000 });
});

test('bundle refused: over maxExtractedBytes', async (t) => {
  const tgz = gzipSync(rawTar([{ path: 'noise.bin', body: randomBytes(2 * 1024 * 1024) }]));
  await assertRefused(t, tgz, /^the bundle is over 1 MiB uncompressed$/, { ...DEFAULT_EXTRACT_LIMITS, maxExtractedBytes: 1024 * 1024 });
});

test(`bundle refused: past BUNDLE_MAX_EXTRACTED_BYTES at its real size (${BUNDLE_MAX_EXTRACTED_BYTES / 1024 / 1024} MiB), a stream made on the fly that stays under the ratio`, async (t) => {
  const MiB = 1024 * 1024;
  // Each MiB starts with noise and ends in zeros: it compresses well, but not past
  // BUNDLE_MAX_RATIO, so only the extracted size can stop it (2.5 x the ratio's floor of noise).
  const piece = Buffer.alloc(MiB);
  randomBytes(Math.ceil((MiB / BUNDLE_MAX_RATIO) * 2.5)).copy(piece);
  async function* tar(): AsyncGenerator<Buffer> {
    yield rawTar([{ path: 'plumber.R', body: plumberR }]).subarray(0, -1024);
    // One file of exactly the limit: with the headers before it, the stream goes past the limit.
    yield rawHeader({ path: 'big.bin' }, BUNDLE_MAX_EXTRACTED_BYTES);
    for (let i = 0; i < BUNDLE_MAX_EXTRACTED_BYTES / MiB; i++) yield piece;
    yield Buffer.alloc(1024);
  }
  const gzip = Readable.from(tar()).pipe(createGzip({ level: 1 }));
  await assertRefused(t, gzip, new RegExp(`^the bundle is over ${BUNDLE_MAX_EXTRACTED_BYTES / MiB} MiB uncompressed$`));
  gzip.destroy();
});

test('bundle refused: more than maxEntries entries', async (t) => {
  const entries = Array.from({ length: 5 }, (_, i) => ({ path: `f${i}.R`, body: '1' }));
  await assertRefused(t, gzipSync(rawTar(entries)), /^the bundle has more than 3 entries$/, { ...DEFAULT_EXTRACT_LIMITS, maxEntries: 3 });
});

/** A path `depth` directories deep, one letter each, ending in a file. */
const deepPath = (depth: number, leaf = 'f.R') => `${'d/'.repeat(depth - 1)}${leaf}`;
/** A long path in a pax header, as tar writes one over 100 bytes. */
const paxEntry = (p: string, body = '1') => [{ path: 'PaxHeader/x', type: 'pax' as const, body: pax({ path: p }) }, { path: 'x', body }];

test(`bundle: an entry ${BUNDLE_MAX_DEPTH} levels deep is extracted`, async (t) => {
  const p = await place(t);
  await extractBundle(chunked(gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, ...paxEntry(deepPath(BUNDLE_MAX_DEPTH))]))), p.releaseDir);
  assert.equal(await readFile(path.join(p.releaseDir, deepPath(BUNDLE_MAX_DEPTH)), 'utf8'), '1');
});

test(`bundle refused: an entry ${BUNDLE_MAX_DEPTH + 1} levels deep, named by its start`, async (t) => {
  await assertRefused(t, gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, ...paxEntry(deepPath(BUNDLE_MAX_DEPTH + 1))])), new RegExp(`^bundle entry "(d/){60}…" is nested ${BUNDLE_MAX_DEPTH + 1} levels deep; at most ${BUNDLE_MAX_DEPTH}$`));
});

test(`bundle refused: a path over ${BUNDLE_MAX_PATH_BYTES} bytes, however shallow`, async (t) => {
  await assertRefused(t, gzipSync(rawTar(paxEntry(`${'n'.repeat(200)}/${'n'.repeat(200)}/${'n'.repeat(200)}/${'n'.repeat(200)}/${'n'.repeat(200)}/${'n'.repeat(200)}`))), new RegExp(`has a path of 1205 bytes; at most ${BUNDLE_MAX_PATH_BYTES}$`));
});

test('bundle refused: the hostile tree (20,000 entries nested 1,900 deep) stops at its first entry past the limit, before it is written', async (t) => {
  // Directories first, as tar lists them: each one level deeper than the last, then files in the deepest.
  const entries = Array.from({ length: 1900 }, (_, i) => ({ path: `${'a/'.repeat(i + 1)}`, type: 'dir' as const }));
  const tar = rawTar([...entries.flatMap((e) => paxEntry(e.path, '').map((x) => (x.type === 'pax' ? x : { ...x, type: 'dir' as const, body: '' }))), ...Array.from({ length: 18_100 }, (_, i) => paxEntry(`${'a/'.repeat(1900)}f${i}`)).flat()]);
  const tgz = gzipSync(tar);
  const p = await place(t);
  const refused = await extractBundle(chunked(tgz), p.releaseDir).catch((err: unknown) => err);
  assert.ok(refused instanceof BundleRefused);
  assert.match(refused.message, new RegExp(`is nested ${BUNDLE_MAX_DEPTH + 1} levels deep; at most ${BUNDLE_MAX_DEPTH}$`));
  assert.equal(await exists(p.releaseDir), false);
});

test('bundle refused: a gzip bomb (50 MB of zeros)', async (t) => {
  const tgz = gzipSync(rawTar([{ path: 'zeros.bin', body: Buffer.alloc(50 * 1024 * 1024) }]));
  assert.ok(tgz.length * BUNDLE_MAX_RATIO < 50 * 1024 * 1024, `the bomb expands past the ratio (${tgz.length} bytes)`);
  await assertRefused(t, tgz, new RegExp(`expands more than ${BUNDLE_MAX_RATIO} times`));
});

test('bundle refused: gzip inside gzip', async (t) => {
  await assertRefused(t, gzipSync(gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }]))), /compressed twice/);
});

test('bundle refused: not gzip at all', async (t) => {
  await assertRefused(t, rawTar([{ path: 'plumber.R', body: plumberR }]), /^the bundle is not gzip data/);
});

test('bundle refused: gzip of something that is not tar', async (t) => {
  await assertRefused(t, gzipSync(Buffer.from('plumber.R\n'.repeat(500))), /not a valid tar archive/);
});

test('bundle refused: a gzip stream cut short', async (t) => {
  const tgz = gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, { path: 'noise.bin', body: randomBytes(100_000) }]));
  await assertRefused(t, tgz.subarray(0, Math.floor(tgz.length / 2)), /^the bundle was cut short: its gzip stream ends early/);
});

test('bundle refused: a tar archive cut inside an entry', async (t) => {
  const tar = rawTar([{ path: 'plumber.R', body: plumberR }, { path: 'noise.bin', body: randomBytes(100_000) }]);
  await assertRefused(t, gzipSync(tar.subarray(0, 50_000)), /not a valid tar archive \(TAR_BAD_ARCHIVE: Truncated input/);
});

test('bundle refused: a tar archive cut between entries (no end marker)', async (t) => {
  const tar = rawTar([{ path: 'plumber.R', body: plumberR }]);
  await assertRefused(t, gzipSync(tar.subarray(0, tar.length - 1024)), /no end marker/);
});

test('bundle refused: a source that fails midway leaves nothing behind', async (t) => {
  const tgz = gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }, { path: 'noise.bin', body: randomBytes(300_000) }]));
  async function* dying(): AsyncGenerator<Buffer> {
    yield* chunked(tgz.subarray(0, 200_000), 16 * 1024);
    throw new Error('connection lost');
  }
  const p = await place(t);
  await assert.rejects(extractBundle(dying(), p.releaseDir), /connection lost/);
  assert.equal(await exists(p.releaseDir), false);
});

test('bundle: a release directory that already exists is neither used nor removed', async (t) => {
  const p = await place(t);
  await mkdir(p.releaseDir);
  await writeFile(path.join(p.releaseDir, 'keep'), 'x');
  await assert.rejects(extractBundle(chunked(gzipSync(rawTar([{ path: 'plumber.R', body: plumberR }]))), p.releaseDir), { code: 'RELEASE_EXISTS' });
  assert.equal(await readFile(path.join(p.releaseDir, 'keep'), 'utf8'), 'x');
});

// --- inspectApiDir ---------------------------------------------------------------------------

async function assertInvalid(dir: string, message: RegExp): Promise<void> {
  await assert.rejects(inspectApiDir(dir), (err: unknown) => {
    assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`);
    assert.match(err.message, message);
    assert.doesNotMatch(err.message, /\n/);
    assert.ok(err.hint, 'says what to do');
    return true;
  });
}

test('inspectApiDir refused: a directory that does not exist', async (t) => {
  const dir = path.join(await scratch(t, 'api'), 'nope');
  await assertInvalid(dir, /the API directory .*nope does not exist/);
});

test('inspectApiDir refused: a file instead of a directory', async (t) => {
  const file = path.join(await scratch(t, 'api'), 'plumber.R');
  await writeFile(file, plumberR);
  await assertInvalid(file, /plumber\.R is not a directory/);
});

test('inspectApiDir refused: no plumber.R or entrypoint.R at the top', async (t) => {
  const dir = await scratch(t, 'api');
  await mkdir(path.join(dir, 'sub'));
  await writeFile(path.join(dir, 'sub', 'plumber.R'), plumberR);
  await writeFile(path.join(dir, 'api.R'), plumberR);
  await symlink('/etc', path.join(dir, 'etc'));
  await assertInvalid(dir, /has no plumber\.R or entrypoint\.R at its top/);
});

test('inspectApiDir refused: plumber.R left out by .plumbignore', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await writeFile(path.join(dir, '.plumbignore'), '*.R\n');
  await assertInvalid(dir, /has no plumber\.R or entrypoint\.R/);
});

test('inspectApiDir refused: a symbolic link pointing outside the directory, named', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await mkdir(path.join(dir, 'data'));
  await symlink('/etc/hostname', path.join(dir, 'data', 'host.txt'));
  await assertInvalid(dir, /the symbolic link data\/host\.txt in .* points outside it \(to \/etc\/hostname\)/);
});

test('inspectApiDir: a link outside the directory is fine when .plumbignore leaves it out', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await symlink('/etc', path.join(dir, 'etc'));
  await writeFile(path.join(dir, '.plumbignore'), 'etc\n');
  assert.deepEqual((await inspectApiDir(dir)).files, ['plumber.R']);
});

test('inspectApiDir refused: a link making a loop', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await mkdir(path.join(dir, 'a'));
  await symlink('..', path.join(dir, 'a', 'up'));
  await assertInvalid(dir, /the symbolic link a\/up .* \(a loop\)/);
});

test('inspectApiDir refused: a dangling link', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await symlink('gone.csv', path.join(dir, 'data.csv'));
  await assertInvalid(dir, /data\.csv .* points to gone\.csv, which does not exist/);
});

test(`inspectApiDir refused: more than ${BUNDLE_MAX_ENTRIES} files`, async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await mkdir(path.join(dir, 'many'));
  // Hard links to one file: ten times quicker to make than as many new files.
  for (let i = 0; i < BUNDLE_MAX_ENTRIES; i++) linkSync(path.join(dir, 'plumber.R'), path.join(dir, 'many', `f${i}`));
  await assertInvalid(dir, new RegExp(`has more than ${BUNDLE_MAX_ENTRIES} files`));
});

test('inspectApiDir: entrypoint.R is preferred over plumber.R, as plumber does', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await writeFile(path.join(dir, 'entrypoint.R'), 'plumber::pr("plumber.R")\n');
  assert.equal((await inspectApiDir(dir)).entrypoint, 'entrypoint.R');
});

test('inspectApiDir: the entry file is found whatever its case, as plumber does', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'Plumber.R'), plumberR);
  assert.equal((await inspectApiDir(dir)).entrypoint, 'plumber.R');
});

test('inspectApiDir: .plumbignore can bring back .RData but not renv/library', async (t) => {
  const dir = await scratch(t, 'api');
  await writeFile(path.join(dir, 'plumber.R'), plumberR);
  await writeFile(path.join(dir, '.RData'), 'RDX3');
  await mkdir(path.join(dir, 'renv/library'), { recursive: true });
  await writeFile(path.join(dir, 'renv/library/x'), '');
  await writeFile(path.join(dir, '.plumbignore'), '!.RData\n!renv/library\n');
  assert.deepEqual((await inspectApiDir(dir)).files, ['.RData', 'plumber.R']);
});

test('a file gone before its pack is read fails the read, not the whole process', async (t: TestContext) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-pack-gone-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
  const packed = packBundle(dir, { files: ['plumber.R', 'model.bin'] } as Parameters<typeof packBundle>[1]);
  // tar finds model.bin missing before anyone reads (a group deploy's packing starts at once and
  // reads as its file takes the bytes): an error then, with no reader, used to end the process.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const read = async () => {
    for await (const chunk of packed) void chunk;
  };
  await assert.rejects(read(), /ENOENT/);
});
