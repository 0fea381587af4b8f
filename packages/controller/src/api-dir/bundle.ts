import { createHash } from 'node:crypto';
import { createReadStream, type Dirent } from 'node:fs';
import { readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import ignore, { type Ignore } from 'ignore';
import { c as createTar } from 'tar';
import { BUNDLE_MAX_BYTES, BUNDLE_MAX_DEPTH, BUNDLE_MAX_EXTRACTED_BYTES, BUNDLE_MAX_ENTRIES, BUNDLE_MAX_PATH_BYTES, ENTRYPOINTS, PlumbError, ValidationError, type BundleFile } from '@plumb/shared';

export interface BundleInfo {
  /** What goes in the bundle: regular files (symlinks resolved), POSIX paths relative to the directory, sorted. */
  files: string[];
  /** Which of plumber's entry files the directory has; plumber finds it whatever its case. */
  entrypoint: (typeof ENTRYPOINTS)[number];
}

const IGNORE_FILE = '.plumbignore';
/** Left out unless .plumbignore brings them back (`!.RData`). */
const DEFAULT_IGNORES = ['.Rhistory', '.RData'];
/** Never sent: version control, RStudio's state, renv's machine-specific library, the ignore file itself. */
const ALWAYS_IGNORED = ['.git', '.Rproj.user', '/renv/library', `/${IGNORE_FILE}`];

const IGNORE_HINT = `add it to ${IGNORE_FILE} if the API does not need it`;

/**
 * Looks at an API directory the way `plumber::plumb(dir=)` will on the droplet and lists what
 * `packBundle` sends. Everything that would make the bundle unusable or unsafe is refused here,
 * before a byte leaves the machine.
 */
export async function inspectApiDir(dir: string): Promise<BundleInfo> {
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') throw new ValidationError(`the API directory ${dir} does not exist`, 'pass the directory that holds plumber.R');
    throw err;
  });
  if (!st.isDirectory()) throw new ValidationError(`${dir} is not a directory`, 'pass the directory that holds plumber.R, not the file');

  const root = await realpath(dir);
  const ig = ignore().add(DEFAULT_IGNORES).add(await readIgnoreFile(dir)).add(ALWAYS_IGNORED);
  // Looked at first so that the wrong directory (a home directory, say) is named as such.
  entrypointOf(dir, (await readdir(dir)).filter((name) => !ig.ignores(name)));
  const files: string[] = [];
  await walk({ dir, root, ig, files }, '', new Set([root]));
  files.sort();
  return { files, entrypoint: entrypointOf(dir, files) };
}

/** A gzip tar stream of exactly `info.files`: symlinks sent as the files they point to, no owners, directories implied. */
export function packBundle(dir: string, info: BundleInfo): NodeJS.ReadableStream {
  const pack = createTar({ cwd: dir, gzip: true, portable: true, follow: true, noDirRecurse: true, strict: true }, info.files);
  // node-tar's Pack is a Minipass stream, not a Node Readable; wrapping keeps backpressure and errors.
  const stream = Readable.from(pack, { objectMode: false });
  // Minipass throws an error it emits with no listener, and the wrapper listens only while it is
  // read: a file gone before the first read (its stat fails at once) ended the process. The error
  // is kept on the wrapper instead (`errored`), where a read or a pipeline started later finds it.
  pack.on('error', (error: unknown) => void stream.destroy(error instanceof Error ? error : new Error(String(error))));
  stream.on('error', () => undefined);
  return stream;
}

/** The bundle's file list as a deploy sends it first (symlinks hashed as the files they point to). */
export async function bundleManifest(dir: string, info: BundleInfo): Promise<BundleFile[]> {
  const manifest: BundleFile[] = [];
  for (const file of info.files) {
    const abs = path.join(dir, file);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(abs)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    manifest.push({ path: file, sha256: hash.digest('hex'), size, executable: ((await stat(abs)).mode & 0o111) !== 0 });
  }
  return manifest;
}

/**
 * What a deploy says when the droplet refused its bundle as over BUNDLE_MAX_BYTES: which files
 * made it big, and how the API can still have them. The droplet kept what it had (the agent
 * removes a refused release), so a user only has to act on the directory.
 */
export async function bundleTooLarge(dir: string, name: string, files: string[]): Promise<PlumbError> {
  const { largest } = await sizesOf(dir, files);
  return tooLarge(`the bundle is over ${mib(BUNDLE_MAX_BYTES)} compressed, the most a droplet takes (nothing changed there)`, name, largest);
}

/**
 * Refuses, before anything is sent, a directory whose files total more than a release may hold
 * once extracted (BUNDLE_MAX_EXTRACTED_BYTES): the agent counts the tar stream it unpacks, which
 * holds every file's bytes and more, so such a bundle is refused there whatever it compresses to,
 * only later (after up to BUNDLE_MAX_BYTES sent). Never refuses a bundle the droplet would take.
 */
export async function refuseOverRelease(dir: string, name: string, files: string[]): Promise<void> {
  const { total, largest } = await sizesOf(dir, files);
  if (total <= BUNDLE_MAX_EXTRACTED_BYTES) return;
  throw tooLarge(`the API's files total ${overLimit(total, BUNDLE_MAX_EXTRACTED_BYTES)} a release may hold on a droplet (nothing was sent)`, name, largest);
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(n < 10 * 1024 * 1024 ? 1 : 0)} MiB`;

/** "`n`, over the `limit`": in MiB, or in bytes when the MiB would read the same (just over). */
const overLimit = (n: number, limit: number) => (mib(n) === mib(limit) ? `${n} bytes, over the ${limit} bytes (${mib(limit)})` : `${mib(n)}, over the ${mib(limit)}`);

/** The files' total size, and the big ones (a plumber.R beside a 500 MiB model is no lead). */
async function sizesOf(dir: string, files: string[]): Promise<{ total: number; largest: Array<{ file: string; size: number }> }> {
  const sized = await Promise.all(files.map(async (file) => ({ file, size: (await stat(path.join(dir, file))).size })));
  const largest = sized.sort((a, b) => b.size - a.size).filter((f, i) => i < 3 && (i === 0 || f.size >= 1024 * 1024));
  return { total: sized.reduce((n, f) => n + f.size, 0), largest };
}

function tooLarge(said: string, name: string, largest: Array<{ file: string; size: number }>): PlumbError {
  return new PlumbError(
    'BUNDLE_TOO_LARGE',
    `${said}; its largest files: ${largest.map((f) => `${f.file} (${mib(f.size)})`).join(', ')}`,
    `add large data to ${IGNORE_FILE} (e.g. ${largest[0]?.file ?? 'data/'}) and have the API fetch it when it starts, into /var/plumber/${name}/data/ (kept across releases)`,
  );
}

async function readIgnoreFile(dir: string): Promise<string> {
  try {
    return await readFile(path.join(dir, IGNORE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/** plumber looks for entrypoint.R, then plumber.R, at the top, ignoring case. */
function entrypointOf(dir: string, files: string[]): BundleInfo['entrypoint'] {
  const top = files.filter((f) => !f.includes('/')).map((f) => f.toLowerCase());
  const found = ENTRYPOINTS.find((e) => top.includes(e.toLowerCase()));
  if (!found) throw new ValidationError(`${dir} has no plumber.R or entrypoint.R at its top`, `pass the directory that holds the API's plumber.R (and check ${IGNORE_FILE} does not leave it out)`);
  return found;
}

interface Walk {
  dir: string;
  /** The directory's real path: links must resolve inside it. */
  root: string;
  ig: Ignore;
  files: string[];
}

/** `chain` holds the real paths of the directories being walked, so a link back up is caught. */
async function walk(w: Walk, rel: string, chain: Set<string>): Promise<void> {
  const entries = await readdir(path.join(w.dir, rel), { withFileTypes: true });
  for (const entry of entries) {
    const child = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (w.ig.ignores(child)) continue;
    const kind = await kindOf(w, child, entry);
    if (kind.type === 'dir') {
      if (w.ig.ignores(`${child}/`)) continue;
      if (chain.has(kind.real)) throw new ValidationError(`the symbolic link ${child} in ${w.dir} points to a directory that contains it (a loop)`, IGNORE_HINT);
      await walk(w, child, new Set(chain).add(kind.real));
      continue;
    }
    if (child.includes('\\')) throw new ValidationError(`the file name ${JSON.stringify(child)} in ${w.dir} has a backslash, which the droplet refuses`, `rename it or ${IGNORE_HINT}`);
    // What the droplet would refuse, refused here before a byte is sent.
    const depth = child.split('/').length;
    if (depth > BUNDLE_MAX_DEPTH || Buffer.byteLength(child) > BUNDLE_MAX_PATH_BYTES) {
      throw new ValidationError(`${JSON.stringify(child.length > 120 ? `${child.slice(0, 120)}…` : child)} in ${w.dir} is ${depth > BUNDLE_MAX_DEPTH ? `nested ${depth} levels deep (at most ${BUNDLE_MAX_DEPTH})` : `a path of over ${BUNDLE_MAX_PATH_BYTES} bytes`}, which the droplet refuses`, IGNORE_HINT);
    }
    w.files.push(child);
    if (w.files.length > BUNDLE_MAX_ENTRIES) throw new ValidationError(`${w.dir} has more than ${BUNDLE_MAX_ENTRIES} files`, `add what the API does not need (data, caches, builds) to ${IGNORE_FILE}`);
  }
}

type Kind = { type: 'file' } | { type: 'dir'; real: string };

async function kindOf(w: Walk, rel: string, entry: Dirent): Promise<Kind> {
  const abs = path.join(w.dir, rel);
  if (entry.isFile()) return { type: 'file' };
  if (entry.isDirectory()) return { type: 'dir', real: await realpath(abs) };
  if (!entry.isSymbolicLink()) throw new ValidationError(`${rel} in ${w.dir} is neither a file nor a directory (a socket, FIFO or device)`, IGNORE_HINT);

  const target = await readlink(abs);
  const real = await realpath(abs).catch(() => {
    throw new ValidationError(`the symbolic link ${rel} in ${w.dir} points to ${target}, which does not exist`, `fix or remove the link, or ${IGNORE_HINT}`);
  });
  const inside = path.relative(w.root, real);
  if (inside === '..' || inside.startsWith('../') || path.isAbsolute(inside)) {
    throw new ValidationError(`the symbolic link ${rel} in ${w.dir} points outside it (to ${target})`, `copy what it points to into the directory, or ${IGNORE_HINT}`);
  }
  const st = await stat(real);
  if (st.isDirectory()) return { type: 'dir', real };
  if (st.isFile()) return { type: 'file' };
  throw new ValidationError(`the symbolic link ${rel} in ${w.dir} points to ${target}, which is neither a file nor a directory`, IGNORE_HINT);
}
