#!/usr/bin/env node
/**
 * The `plumb` command as installed (the package's bin). The command itself is the bundle that
 * scripts/bundle-cli.mjs writes beside this file: plumb-main.js and the chunks it needs, each a
 * script run here with a V8 code cache (node 20 has no compile cache for modules, and compiling
 * the chunks was the biggest part of a command's start). Imports node's built-ins only, so that
 * `plumb --version` reads this file alone.
 *
 * The cache is this user's (XDG cache dir, 0700, owned by the user), one file per chunk, named by
 * the SHA-256 of the chunk's source and the node version and architecture: another build, another
 * plumb or another node never reads it. Each file carries the SHA-256 of its data: a broken one is
 * ignored and written again, as is one V8 refuses (other flags). Everything about the cache is
 * best effort: without it, or when it cannot be written, the command runs as it would anyway.
 * PLUMB_CODE_CACHE=0 leaves it alone (benchmarks compare both).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  const source = readFileSync(filename, 'utf8');
  const cacheFile = cacheDir && path.join(cacheDir, `${file}.${createHash('sha256').update(source).digest('hex').slice(0, 32)}`);
  const cachedData = cacheFile ? readCache(cacheFile) : undefined;
  // On one line with the source's first: stack traces keep their line numbers. Strict, as the ES modules it was made from.
  const script = new vm.Script(`(function (exports, require, module, __plumbUrl) {'use strict';${source}\n})`, { filename, ...(cachedData ? { cachedData } : {}) });
  const compiled = !cachedData || script.cachedDataRejected === true;
  trace('run %s (%s)', file, cachedData ? (compiled ? 'cache refused by V8' : 'from the code cache') : 'compiled');
  if (cacheFile && compiled) uncached.push({ script, file: cacheFile });
  const module: { exports: Exports } = { exports: {} };
  chunks.set(file, module);
  (script.runInThisContext() as ChunkCode)(module.exports, requireFrom, module, pathToFileURL(filename).href);
  return module.exports;
}

/** `require` inside the bundle: another chunk, or one of node's built-ins (the bundle holds every package). */
function requireFrom(specifier: string): unknown {
  if (specifier.startsWith('./')) return bundleFile(specifier.slice(2));
  if (!isBuiltin(specifier)) trace('require %s', specifier);
  return nodeRequire(specifier);
}

/** $XDG_CACHE_HOME/plumb/code-cache/NODE-ARCH, made 0700 if missing; none when it is not this user's alone. */
function usableCacheDir(): string | undefined {
  try {
    const base = process.env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache');
    const dir = path.join(base, 'plumb', 'code-cache', `${process.version}-${process.arch}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    return (process.getuid === undefined || st.uid === process.getuid()) && (st.mode & 0o022) === 0 ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** How long a cache of a chunk this build lacks is kept (another plumb on this machine may use it; it writes it again if not). */
const FOREIGN_CACHE_KEPT_MS = 30 * 24 * 3600 * 1000;
const chunkOf = (cacheName: string) => cacheName.replace(/\.[0-9a-f]{32}$/, '');

/** The cached data, if the file is whole: its first 32 bytes are the SHA-256 of the rest. */
function readCache(file: string): Buffer | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    return undefined;
  }
  const data = bytes.subarray(32);
  return bytes.length > 32 && createHash('sha256').update(data).digest().equals(bytes.subarray(0, 32)) ? data : undefined;
}

/**
 * As the process exits: the code this run compiled (the functions it ran included), for the next
 * run; written whole or not at all (a temporary file renamed). Caches of other builds are removed.
 */
function writeCaches(): void {
  if (uncached.length === 0 || !cacheDir) return;
  try {
    const current = new Set(uncached.map((u) => path.basename(u.file)));
    for (const { script, file } of uncached) {
      const data = script.createCachedData();
      const temporary = `${file}.${process.pid}.tmp`;
      writeFileSync(temporary, Buffer.concat([createHash('sha256').update(data).digest(), data]), { mode: 0o600 });
      renameSync(temporary, file);
    }
    // Another build's cache of a chunk this run wrote (same name, another source) is never read
    // again. One of a chunk this build lacks may be another plumb's on this machine: kept a while.
    const ours = new Set(readdirSync(dist));
    const written = new Set(uncached.map((u) => chunkOf(path.basename(u.file))));
    for (const name of readdirSync(cacheDir)) {
      const chunk = chunkOf(name);
      if (current.has(name) || name.endsWith('.tmp')) continue;
      if (written.has(chunk) || (!ours.has(chunk) && Date.now() - statSync(path.join(cacheDir, name)).mtimeMs > FOREIGN_CACHE_KEPT_MS)) rmSync(path.join(cacheDir, name), { force: true });
    }
  } catch {
    // A full disk or a read-only home: the next run compiles, as this one did.
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
