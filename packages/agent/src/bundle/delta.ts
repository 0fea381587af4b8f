import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import { BUNDLE_MAX_EXTRACTED_BYTES, BundleFile, PlumbError } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { log } from '../log.js';
import { layout } from '../system/layout.js';
import { BundleRefused, extractBundle, releasePath } from './extract.js';

/**
 * Deploys that send only changed bytes (docs/architecture.md, "Only changed bytes travel"). The
 * controller sends the release's file list with sha256 hashes; the agent answers which files it
 * has in none of the API's kept releases; the bundle holds only those. The release is then the
 * files that arrived plus hard links (or copies) of the others, byte for byte what a whole bundle
 * would have made. Files are taken only from this API's own releases, by the agent's own record
 * of what it wrote there (`layout.manifestFile`), never from a path the wire names.
 */

/** A release's files as the agent made them, and how many came from earlier releases. */
export interface ReleaseFiles {
  files: number;
  bytes: number;
  reused: number;
  written: BundleFile[];
}

/** The bundle of a deploy, and how to tell the controller which files it must hold. */
export interface IncomingBundle {
  data: AsyncIterable<Buffer>;
  need(files: number[]): void;
}

const SIZE_HINT = 'leave large files out of the bundle with .plumbignore';
const quote = (s: string) => JSON.stringify(s);
const StoredManifest = z.array(BundleFile);

/** A deploy's file list, checked as tar entries are: paths inside the release, none twice, none under another file, the whole within the size cap. */
export function checkManifest(files: BundleFile[]): BundleFile[] {
  const seen = new Set<string>();
  let total = 0;
  const checked = files.map((f) => {
    const rel = releasePath(f.path, `file list entry ${quote(f.path)}`);
    if (seen.has(rel)) throw new BundleRefused(`file list entry ${quote(f.path)} appears twice`);
    seen.add(rel);
    total += f.size;
    return { ...f, path: rel };
  });
  if (total > BUNDLE_MAX_EXTRACTED_BYTES) throw new BundleRefused(`the release would be over ${BUNDLE_MAX_EXTRACTED_BYTES / 1024 / 1024} MiB`, SIZE_HINT);
  // Each directory is looked at once, however many files it holds.
  const dirs = new Set<string>();
  for (const f of checked) {
    for (let dir = path.posix.dirname(f.path); dir !== '.' && !dirs.has(dir); dir = path.posix.dirname(dir)) {
      if (seen.has(dir)) throw new BundleRefused(`file list entry ${quote(f.path)} is inside "${dir}", which the list has as a file`);
      dirs.add(dir);
    }
  }
  return checked;
}

/** Where a file with a given hash already is: a release of this API and the path in it. */
type ReleaseIndex = Map<string, { release: string; file: BundleFile }>;

/**
 * The files of the API's kept releases by content hash, the first release listed winning (the
 * live one first: its files are the likeliest to be in the page cache).
 */
async function releaseIndex(name: string, releases: string[]): Promise<ReleaseIndex> {
  const index: ReleaseIndex = new Map();
  for (const release of releases) {
    for (const file of await manifestOf(name, release)) if (!index.has(file.sha256)) index.set(file.sha256, { release, file });
  }
  return index;
}

/**
 * A kept release's file list. Releases made before file lists were kept are hashed once here:
 * only what root wrote counts (the API, which may add files beside its code, writes as its own user).
 */
export async function manifestOf(name: string, release: string): Promise<BundleFile[]> {
  const file = layout.manifestFile(name, release);
  const stored = await readFile(file, 'utf8').then((text) => StoredManifest.safeParse(JSON.parse(text)), () => undefined);
  if (stored?.success) return stored.data;
  const dir = layout.releaseDir(name, release);
  if (!(await lstat(dir).then((st) => st.isDirectory(), () => false))) return [];
  const scanned = await scanRelease(dir);
  await saveManifest(name, release, scanned);
  log.info('release file list made', { api: name, release, files: scanned.length });
  return scanned;
}

const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * ReleaseDigest (packages/shared): the same files and env give the same digest on any droplet,
 * whatever their order. An empty env adds nothing, so a release without --env keeps the digest
 * it had before env counted.
 */
export function releaseDigest(files: BundleFile[], env: Record<string, string> = {}): string {
  const hash = createHash('sha256');
  for (const f of [...files].sort((a, b) => byteOrder(a.path, b.path))) hash.update(`${f.path}\0${f.sha256}\0${f.executable ? 'x' : '-'}\n`);
  for (const key of Object.keys(env).sort(byteOrder)) hash.update(`env\0${key}\0${env[key]}\n`);
  return hash.digest('hex');
}

async function scanRelease(dir: string): Promise<BundleFile[]> {
  const found: BundleFile[] = [];
  const pending = [''];
  for (let rel = pending.pop(); rel !== undefined; rel = pending.pop()) {
    for (const entry of await readdir(path.join(dir, rel))) {
      const child = rel === '' ? entry : `${rel}/${entry}`;
      const st = await lstat(path.join(dir, child));
      if (st.uid !== 0) continue;
      if (st.isDirectory()) pending.push(child);
      else if (st.isFile()) found.push({ path: child, sha256: await hashFile(path.join(dir, child)), size: st.size, executable: (st.mode & 0o111) !== 0 });
    }
  }
  return found;
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Keeps a release's file list for later deploys: root-only, beside the releases. */
export async function saveManifest(name: string, release: string, files: BundleFile[]): Promise<void> {
  await mkdir(layout.manifestsDir(name), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  await writeFileAtomic(layout.manifestFile(name, release), JSON.stringify(files));
}

export const removeManifest = (name: string, release: string) => rm(layout.manifestFile(name, release), { force: true });

/**
 * A release from a file list: tells the controller what to send, extracts it (every rule of the
 * extractor applies), checks it is exactly what was asked for with the hashes the list gave, then
 * adds the other files from the kept releases. On any failure `releaseDir` is removed.
 */
export async function receiveDelta(name: string, manifest: BundleFile[], releases: string[], bundle: IncomingBundle, releaseDir: string, progress: (step: string) => void): Promise<ReleaseFiles> {
  const files = checkManifest(manifest);
  const index = await releaseIndex(name, releases);
  const need = files.flatMap((f, i) => (index.has(f.sha256) ? [] : [i]));
  progress(`receiving ${need.length} of ${files.length} files (the others are on the droplet already)`);
  bundle.need(need);
  const asked = new Set(need.map((i) => files[i]!.path));
  try {
    let sent = new Map<string, BundleFile>();
    if (need.length > 0) {
      sent = new Map((await extractBundle(bundle.data, releaseDir)).written.map((w) => [w.path, w]));
    } else {
      await mkdir(releaseDir, { mode: 0o755 });
    }
    for (const p of sent.keys()) if (!asked.has(p)) throw new BundleRefused(`bundle entry ${quote(p)} was not asked for`);
    const written: BundleFile[] = [];
    let reused = 0;
    for (const f of files) {
      const got = sent.get(f.path);
      if (got) {
        if (got.sha256 !== f.sha256 || got.executable !== f.executable) throw new BundleRefused(`bundle entry ${quote(f.path)} differs from its entry in the file list (was it changed during the deploy?)`, 'deploy again');
        written.push(got);
        continue;
      }
      if (asked.has(f.path)) throw new BundleRefused(`the bundle lacks ${quote(f.path)}, which the agent asked for`);
      await placeFrom(index.get(f.sha256)!, name, releaseDir, f);
      written.push(f);
      reused++;
    }
    return { files: written.length, bytes: written.reduce((n, f) => n + f.size, 0), reused, written };
  } catch (err) {
    await rm(releaseDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Puts a kept release's file at `f.path` in the new release: a hard link when the mode is the
 * same (release files are root's and never written again), else a copy. The source must still be
 * the regular root-owned file the record describes.
 */
async function placeFrom(source: { release: string; file: BundleFile }, name: string, releaseDir: string, f: BundleFile): Promise<void> {
  const from = path.join(layout.releaseDir(name, source.release), source.file.path);
  const to = path.join(releaseDir, f.path);
  const st = await lstat(from).catch(() => undefined);
  if (!st?.isFile() || st.uid !== 0 || st.size !== source.file.size) {
    throw new PlumbError('RELEASE_CHANGED', `${from} is no longer the file the agent recorded for release ${source.release}`, 'deploy again with --full');
  }
  await mkdir(path.dirname(to), { recursive: true, mode: 0o755 });
  if (((st.mode & 0o111) !== 0) === f.executable) {
    const linked = await link(from, to).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code === 'EXDEV' || err.code === 'EMLINK' || err.code === 'EPERM') return false;
      throw err;
    });
    if (linked) return;
  }
  await copyFile(from, to, constants.COPYFILE_EXCL);
  await chmod(to, f.executable ? 0o755 : 0o644);
}
