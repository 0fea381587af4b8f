#!/usr/bin/env node
/**
 * The `plumb` command as installed (the package's bin). The command itself is the bundle that
 * scripts/bundle-cli.mjs writes beside this file: plumb-main.js and the chunks it needs, each a
 * script run here with a V8 code cache (node 20 has no compile cache for modules, and compiling
 * the chunks was the biggest part of a command's start). Imports node's built-ins only, so that
 * `plumb --version` reads this file alone.
 *
 * The cache is this user's (XDG cache dir, 0700), one file per chunk, named by the SHA-256 of the
 * exact text compiled, in a directory named by node's version, V8's and the architecture: another
 * build, another plumb or another node never reads it. A code cache is code: it is used only when
 * every directory above it is this user's or root's and writable by no one else (a root-owned
 * sticky one like /tmp aside), and each file is read through a descriptor checked to be a regular
 * file of this user's, writable by no one else, with one link. Each file carries the SHA-256 of its
 * data: a broken one is ignored and written again, as is one V8 refuses (other flags). Everything
 * about the cache is best effort: without it, or when it cannot be written, the command runs as it
 * would anyway. PLUMB_CODE_CACHE=0 leaves it alone (benchmarks compare both).
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { debuglog } from 'node:util';
import vm from 'node:vm';

const nodeRequire = createRequire(import.meta.url);
type Exports = Record<string, unknown>;
/** A chunk's code: what esbuild made of it (CommonJS), wrapped as a function node's way. */
type ChunkCode = (exports: Exports, require: (specifier: string) => unknown, module: { exports: Exports }, __plumbUrl: string) => void;

/** NODE_DEBUG=plumb-bundle prints each chunk run and each module required from outside the bundle (test/unit/cli-startup). */
const trace = debuglog('plumb-bundle');
const dist = path.dirname(fileURLToPath(import.meta.url));
const chunks = new Map<string, { exports: Exports }>();
/** Chunks whose code this run compiled without a cache: their cache is written as the process exits. */
const uncached: Array<{ script: vm.Script; file: string }> = [];
let cacheDir: string | undefined;

/** Runs a file of the bundle (once; later calls get its exports), as node runs a CommonJS module. */
function bundleFile(file: string): Exports {
  const known = chunks.get(file);
  if (known) return known.exports;
  const filename = path.join(dist, file);
  // On one line with the source's first: stack traces keep their line numbers. Strict, as the ES modules it was made from.
  const wrapped = `(function (exports, require, module, __plumbUrl) {'use strict';${readFileSync(filename, 'utf8')}\n})`;
  // Named by the whole text compiled: V8 itself checks only its length (and flags, and its version).
  const cacheFile = cacheDir && path.join(cacheDir, `${file}.${createHash('sha256').update(wrapped).digest('hex').slice(0, 32)}`);
  const cachedData = cacheFile ? readCache(cacheFile) : undefined;
  const script = new vm.Script(wrapped, { filename, ...(cachedData ? { cachedData } : {}) });
  const compiled = !cachedData || script.cachedDataRejected === true;
  trace('run %s (%s)', file, cachedData ? (compiled ? 'cache refused by V8' : 'from the code cache') : 'compiled');
  if (cacheFile && compiled) uncached.push({ script, file: cacheFile });
  const module: { exports: Exports } = { exports: {} };
  chunks.set(file, module);
  try {
    (script.runInThisContext() as ChunkCode)(module.exports, requireFrom, module, pathToFileURL(filename).href);
  } catch (err) {
    // Not left half made for the next require: it runs again and throws again, as an ES module would.
    chunks.delete(file);
    throw err;
  }
  return module.exports;
}

/** `require` inside the bundle: another chunk, or one of node's built-ins (the bundle holds every package). */
function requireFrom(specifier: string): unknown {
  if (specifier.startsWith('./')) return bundleFile(specifier.slice(2));
  if (!isBuiltin(specifier)) trace('require %s', specifier);
  return nodeRequire(specifier);
}

const uid = process.getuid?.();
/** Nobody but this user (or root) can change what is in it: this user's or root's, writable by no one else, or root's and sticky (/tmp). */
const safeDir = (st: Stats) => (st.uid === uid || st.uid === 0) && ((st.mode & 0o022) === 0 || (st.uid === 0 && (st.mode & 0o1000) !== 0));
/** A directory and every one above it. */
const withAncestors = (dir: string): string[] => (path.dirname(dir) === dir ? [dir] : [...withAncestors(path.dirname(dir)), dir]);

/**
 * $XDG_CACHE_HOME/plumb/code-cache/NODE-V8-ARCH (a relative XDG_CACHE_HOME is ignored, as XDG
 * says), made 0700 if missing; none when anyone but this user (and root) could change it. Nothing is
 * made under a directory that is not this user's (`sudo -E` would leave root's files in the user's
 * home), and root with another user's HOME uses no cache.
 */
function usableCacheDir(): string | undefined {
  try {
    const home = os.homedir();
    if (uid === undefined) return undefined; // no owners to check (Windows): no cache
    if (uid === 0 && statSync(home).uid !== 0) return undefined;
    const xdg = process.env['XDG_CACHE_HOME'];
    const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(home, '.cache');
    const dir = path.join(base, 'plumb', 'code-cache', `${process.version}-v8-${process.versions.v8}-${process.arch}`);
    if (!existsSync(dir)) {
      const existing = withAncestors(dir).filter((d) => existsSync(d)).pop();
      if (existing === undefined || statSync(existing).uid !== uid) return undefined;
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    }
    const real = realpathSync(dir);
    const leaf = statSync(real);
    const safe = leaf.uid === uid && (leaf.mode & 0o077) === 0 && withAncestors(real).every((d) => safeDir(statSync(d)));
    return safe ? real : undefined;
  } catch {
    return undefined;
  }
}

/** How long a cache of a chunk this build lacks is kept (another plumb on this machine may use it; it writes it again if not). */
const FOREIGN_CACHE_KEPT_MS = 30 * 24 * 3600 * 1000;
/** How long another build's cache of a chunk this build has too is kept: two installs used in turns do not remove each other's at every turn. */
const OTHER_BUILD_CACHE_KEPT_MS = 24 * 3600 * 1000;
/**
 * How long another node's cache directory (another version, or architecture) is kept unused: node
 * was upgraded, or another node runs plumb in turns with this one (then it is read, and kept).
 */
const OTHER_NODE_CACHE_KEPT_MS = 7 * 24 * 3600 * 1000;
const NODE_CACHE_DIR = /^v\d+\.\d+\.\d+-v8-.+$/;
/** A temporary file of a write that never finished (a killed process). */
const TEMPORARY_KEPT_MS = 3600 * 1000;
const chunkOf = (cacheName: string) => cacheName.replace(/\.[0-9a-f]{32}$/, '');

/** The cached data, if the file is whole: its first 32 bytes are the SHA-256 of the rest. */
function readCache(file: string): Buffer | undefined {
  let bytes: Buffer;
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    // Checked on what is open, not on the name: nothing can be swapped in between.
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== uid || (st.mode & 0o022) !== 0 || st.nlink !== 1) return undefined;
    bytes = readFileSync(fd);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const data = bytes.subarray(32);
  return bytes.length > 32 && createHash('sha256').update(data).digest().equals(bytes.subarray(0, 32)) ? data : undefined;
}

/**
 * As the process exits: the code this run compiled (the functions it ran included), for the next
 * run; written whole or not at all (a temporary file renamed). Old caches of other builds, old
 * temporary files and other nodes' directories unused for a while are removed: here, where a run
 * compiled anyway (a new plumb, a new node), not on the way of a run that found its cache.
 */
function writeCaches(): void {
  if (uncached.length === 0 || !cacheDir) return;
  try {
    const current = new Set(uncached.map((u) => path.basename(u.file)));
    for (const { script, file } of uncached) {
      const data = script.createCachedData();
      const temporary = `${file}.${process.pid}.tmp`;
      writeFileSync(temporary, Buffer.concat([createHash('sha256').update(data).digest(), data]), { mode: 0o600, flag: 'wx' });
      renameSync(temporary, file);
    }
    const ours = new Set(readdirSync(dist));
    const now = Date.now();
    for (const name of readdirSync(cacheDir)) {
      if (current.has(name)) continue;
      const chunk = chunkOf(name);
      // Another build's cache of a chunk this build has (plumb-main.js) may be another install's, used in turns with this one.
      const keptMs = name.endsWith('.tmp') ? TEMPORARY_KEPT_MS : ours.has(chunk) ? OTHER_BUILD_CACHE_KEPT_MS : FOREIGN_CACHE_KEPT_MS;
      try {
        if (now - statSync(path.join(cacheDir, name)).mtimeMs > keptMs) rmSync(path.join(cacheDir, name), { force: true });
      } catch {
        // Gone meanwhile: another plumb, at the same time, removed it.
      }
    }
    removeUnusedNodeCaches(cacheDir, now);
  } catch {
    // A full disk or a read-only home: the next run compiles, as this one did.
  }
}

/**
 * Removes the cache directories beside `cacheDir` (other nodes') not used for OTHER_NODE_CACHE_KEPT_MS:
 * last written, or last read (a file's access time; relatime updates it once a day), whichever
 * is later. Only this user's directories, and nothing it cannot read: best effort, as the rest.
 */
function removeUnusedNodeCaches(cacheDir: string, now: number): void {
  const parent = path.dirname(cacheDir);
  for (const name of readdirSync(parent)) {
    const dir = path.join(parent, name);
    if (dir === cacheDir || !NODE_CACHE_DIR.test(name)) continue;
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || st.uid !== uid) continue;
      const used = readdirSync(dir).map((f) => lstatSync(path.join(dir, f))).reduce((latest, f) => Math.max(latest, f.atimeMs, f.mtimeMs), st.mtimeMs);
      if (now - used > OTHER_NODE_CACHE_KEPT_MS) rmSync(dir, { recursive: true, force: true });
    } catch {
      // Gone meanwhile (another plumb removed it), or unreadable: left as it is.
    }
  }
}

const argv = process.argv.slice(2);
// `plumb --version` loads nothing else (scripts and prompts call it; every module costs start-up time).
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  process.stdout.write(`${(nodeRequire('../package.json') as { version: string }).version}\n`);
} else {
  cacheDir = process.env['PLUMB_CODE_CACHE'] === '0' ? undefined : usableCacheDir();
  if (cacheDir) process.once('exit', writeCaches);
  await (bundleFile('plumb-main.js') as { main: (argv: string[]) => Promise<void> }).main(argv);
}
