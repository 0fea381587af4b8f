import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { constants } from 'node:fs';
import { chmod, mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { BUNDLE_MAX_BYTES, BUNDLE_MAX_DEPTH, BUNDLE_MAX_ENTRIES, BUNDLE_MAX_EXTRACTED_BYTES, BUNDLE_MAX_PATH_BYTES, BUNDLE_MAX_RATIO, PlumbError, type BundleFile } from '@plumb/shared';

/** The agent would not unpack a bundle: the message names the entry (or the limit) and why. */
export class BundleRefused extends PlumbError {
  override name = 'BundleRefused';
  constructor(message: string, hint?: string) {
    super('BUNDLE_REFUSED', message, hint);
  }
}

export interface ExtractLimits {
  /** Compressed bytes received. */
  maxBytes: number;
  /** Bytes out of gzip (the tar stream). */
  maxExtractedBytes: number;
  /** Tar entries (files and directories). */
  maxEntries: number;
  /** Extracted bytes per compressed byte. */
  maxRatio: number;
  /** Path components of one entry (a/b/c.R: 3). */
  maxDepth: number;
  /** Bytes of one entry's path. */
  maxPathBytes: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxBytes: BUNDLE_MAX_BYTES,
  maxExtractedBytes: BUNDLE_MAX_EXTRACTED_BYTES,
  maxEntries: BUNDLE_MAX_ENTRIES,
  maxRatio: BUNDLE_MAX_RATIO,
  maxDepth: BUNDLE_MAX_DEPTH,
  maxPathBytes: BUNDLE_MAX_PATH_BYTES,
};

export interface Extracted {
  /** Regular files written. */
  files: number;
  /** Their bytes. */
  bytes: number;
  /** Bytes received. */
  compressedBytes: number;
  /** Each file written, hashed on the way: what later deploys may reuse (bundle/delta.ts). */
  written: BundleFile[];
}

/** Small archives compress far better than any bomb ratio; the ratio is judged once this much is out. */
const RATIO_GRACE_BYTES = 1024 * 1024;

const FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

const REFUSED_TYPES: Partial<Record<ReadEntry['type'], string>> = {
  SymbolicLink: 'a symbolic link',
  Link: 'a hard link',
  CharacterDevice: 'a character device',
  BlockDevice: 'a block device',
  FIFO: 'a FIFO',
};

const SIZE_HINT = 'leave large files out of the bundle with .plumbignore';
const DEPTH_HINT = 'leave deep trees (caches, builds) out of the bundle with .plumbignore';

/**
 * Unpacks a gzip tar stream into `releaseDir`, which must not exist yet (its parent must).
 * Only regular files and directories are written, only inside `releaseDir`, with modes of our
 * choosing and no ownership from the archive. On any failure `releaseDir` is removed before the
 * promise rejects. The source is read only as fast as the disk takes it.
 */
export async function extractBundle(
  source: AsyncIterable<Buffer> | NodeJS.ReadableStream,
  releaseDir: string,
  limits: ExtractLimits = DEFAULT_EXTRACT_LIMITS,
): Promise<Extracted> {
  await mkdir(releaseDir, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') throw new PlumbError('RELEASE_EXISTS', `the release directory ${releaseDir} already exists`);
    throw err;
  });
  try {
    await chmod(releaseDir, 0o755);
    return await new Extraction(releaseDir, limits).run(source);
  } catch (err) {
    await rm(releaseDir, { recursive: true, force: true });
    throw err;
  }
}

class Extraction {
  private readonly parser = new Parser({ strict: true, zstd: false });
  /** Aborted with the first failure: stops waits on the parser and the stream pipeline. */
  private readonly stop = new AbortController();
  private failure: Error | undefined;
  /** Entries are written one after another; this is the last one's promise (never rejects). */
  private work: Promise<void> = Promise.resolve();
  /** The entry being written, so a failure can end its read. */
  private current: ReadEntry | undefined;
  /** Directories made so far (relative): anything else that exists was written as a file. */
  private readonly dirs = new Set<string>();
  /** The tar stream's first bytes, held until we know it is not compressed a second time. */
  private head: Buffer | undefined = Buffer.alloc(0);
  private sawEnd = false;
  private entries = 0;
  private files = 0;
  private bytes = 0;
  private compressed = 0;
  private extracted = 0;
  private readonly written: BundleFile[] = [];

  constructor(
    private readonly root: string,
    private readonly limits: ExtractLimits,
  ) {
    // node-tar reports everything through events; a throw inside them can crash the process, so
    // each listener records a refusal and stops the parser with its own abort().
    this.parser.on('entry', (entry: ReadEntry) => {
      this.work = this.work.then(() => this.write(entry)).catch((err: unknown) => this.fail(err));
    });
    this.parser.on('ignoredEntry', (entry: ReadEntry) => this.fail(refusalOfType(entry)));
    this.parser.on('eof', () => {
      this.sawEnd = true;
    });
    this.parser.on('error', (err: Error) => this.fail(new BundleRefused(`the bundle is not a valid tar archive (${err.message})`)));
  }

  async run(source: AsyncIterable<Buffer> | NodeJS.ReadableStream): Promise<Extracted> {
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => this.feed(chunk).then(() => cb(), (err: unknown) => cb(this.failure ?? asError(err))),
      final: (cb) => this.finish().then(() => cb(), (err: unknown) => cb(this.failure ?? asError(err))),
    });
    try {
      // 64 KiB out of gzip per step rather than 16: fewer writes, over twice the throughput.
      await pipeline(this.count(source), createGunzip({ chunkSize: 64 * 1024 }), sink, { signal: this.stop.signal });
    } catch (err) {
      this.fail(gzipRefusal(err));
    }
    await this.work;
    if (this.failure) throw this.failure;
    return { files: this.files, bytes: this.bytes, compressedBytes: this.compressed, written: this.written };
  }

  private async *count(source: AsyncIterable<Buffer> | NodeJS.ReadableStream): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      this.compressed += buf.length;
      if (this.compressed > this.limits.maxBytes) throw new BundleRefused(`the bundle is over ${mib(this.limits.maxBytes)} compressed`, SIZE_HINT);
      yield buf;
    }
  }

  /** One chunk of the tar stream into the parser, waiting while it (or the entry being written) is full. */
  private async feed(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.extracted += chunk.length;
    if (this.extracted > this.limits.maxExtractedBytes) throw this.refuse(`the bundle is over ${mib(this.limits.maxExtractedBytes)} uncompressed`, SIZE_HINT);
    if (this.extracted > RATIO_GRACE_BYTES && this.extracted > this.compressed * this.limits.maxRatio) {
      throw this.refuse(`the bundle expands more than ${this.limits.maxRatio} times (a decompression bomb?)`);
    }
    // Past the end marker nothing is read; the parser would only keep piling it up in memory.
    if (this.sawEnd) return;
    const data = this.sniff(chunk);
    if (data && !this.parser.write(data)) await once(this.parser, 'drain', { signal: this.stop.signal });
  }

  /**
   * The parser would gunzip (again) a tar stream that starts with gzip's magic bytes, out of
   * reach of the counts above; a bundle compressed twice is refused instead.
   */
  private sniff(chunk: Buffer): Buffer | undefined {
    if (!this.head) return chunk;
    const data = Buffer.concat([this.head, chunk]);
    if (data.length < 2) {
      this.head = data;
      return undefined;
    }
    this.head = undefined;
    if (data[0] === 0x1f && data[1] === 0x8b) throw this.refuse('the bundle is compressed twice: inside the gzip stream is gzip again, not a tar archive');
    return data;
  }

  private async finish(): Promise<void> {
    if (this.head?.length) this.parser.write(this.head);
    const ended = once(this.parser, 'end', { signal: this.stop.signal });
    this.parser.end();
    await ended;
    await this.work;
    if (this.failure) throw this.failure;
    if (!this.sawEnd) throw this.refuse('the bundle was cut short: its tar archive has no end marker');
  }

  private async write(entry: ReadEntry): Promise<void> {
    if (this.failure) return;
    if (++this.entries > this.limits.maxEntries) throw new BundleRefused(`the bundle has more than ${this.limits.maxEntries} entries`, 'leave files out of the bundle with .plumbignore');
    const rel = checkEntry(entry, this.limits);
    if (entry.type === 'Directory') {
      await this.makeDirs(rel, rel, entry.path);
      entry.resume();
      return;
    }
    const parent = path.posix.dirname(rel);
    if (parent !== '.') await this.makeDirs(parent, rel, entry.path);

    const mode = (entry.mode ?? 0) & 0o111 ? 0o755 : 0o644;
    const fh = await open(path.join(this.root, rel), FILE_FLAGS, mode).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'EEXIST' ? new BundleRefused(`bundle entry ${quote(entry.path)} appears twice`) : err;
    });
    try {
      await fh.chmod(mode);
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of this.chunks(entry)) {
        for (let done = 0; done < chunk.length; ) done += (await fh.write(chunk, done)).bytesWritten;
        hash.update(chunk);
        size += chunk.length;
      }
      this.bytes += size;
      if (this.failure) return;
      this.written.push({ path: rel, sha256: hash.digest('hex'), size, executable: mode === 0o755 });
      this.files++;
    } finally {
      await fh.close();
    }
  }

  /**
   * The entry's body until it ends or the extraction fails. A failure destroys the entry, which
   * ends a read that is waiting; a destroyed entry must not be read again (that read would never
   * settle), hence the look before each one.
   */
  private async *chunks(entry: ReadEntry): AsyncGenerator<Buffer> {
    this.current = entry;
    try {
      const reader = entry[Symbol.asyncIterator]();
      while (!this.failure) {
        const next = await reader.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      this.current = undefined;
    }
  }

  /**
   * Makes `dir` and its parents one at a time, for the entry at `entryRel`. Everything under the
   * root was made by this extraction and links are never written, so each parent is a real
   * directory inside the root.
   */
  private async makeDirs(dir: string, entryRel: string, entryPath: string): Promise<void> {
    // The common case, a file in a directory already made, costs one look-up.
    if (this.dirs.has(dir)) return;
    let at = '';
    for (const part of dir.split('/')) {
      at = at ? `${at}/${part}` : part;
      if (this.dirs.has(at)) continue;
      const abs = path.join(this.root, at);
      await mkdir(abs, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
        throw new BundleRefused(at === entryRel ? `bundle entry ${quote(entryPath)} appears twice` : `bundle entry ${quote(entryPath)} is inside "${at}", which the bundle has as a file`);
      });
      await chmod(abs, 0o755);
      this.dirs.add(at);
    }
  }

  private refuse(message: string, hint?: string): BundleRefused {
    const err = new BundleRefused(message, hint);
    this.fail(err);
    return err;
  }

  /** Records the first failure and stops everything: the parser, the entry being read, the pipeline. */
  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure = asError(err);
    this.parser.abort(this.failure);
    if (this.current) {
      // The parser may still push into the entry it was filling; a destroyed Minipass reports
      // that as 'error', which must have a listener.
      this.current.on('error', () => undefined);
      this.current.destroy();
    }
    this.stop.abort(this.failure);
  }
}

/** The entry's path, relative and normalized, or a refusal naming it. */
function checkEntry(entry: ReadEntry, limits: ExtractLimits): string {
  const p = entry.path;
  const named = `bundle entry ${quote(p)}`;
  if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile' && entry.type !== 'Directory') throw refusalOfType(entry);
  return releasePath(p, named, limits);
}

/**
 * The rule for where a bundle may put a file: `p` relative and normalized inside the release, no
 * deeper and no longer than the caps, or a refusal naming it. Tar entries and a deploy's file
 * list (bundle/delta.ts) both go through it, so a file list cannot make the agent walk (and
 * mkdir) a tree the tar path would refuse.
 */
export function releasePath(p: string, named = `bundle entry ${quote(p)}`, limits: Pick<ExtractLimits, 'maxDepth' | 'maxPathBytes'> = DEFAULT_EXTRACT_LIMITS): string {
  // Before any other work on the path: what follows is linear in its length, and so is the kernel's.
  if (Buffer.byteLength(p) > limits.maxPathBytes) throw new BundleRefused(`${named} has a path of ${Buffer.byteLength(p)} bytes; at most ${limits.maxPathBytes}`, DEPTH_HINT);
  const depth = p.split('/').filter((part) => part !== '' && part !== '.').length;
  if (depth > limits.maxDepth) throw new BundleRefused(`${named} is nested ${depth} levels deep; at most ${limits.maxDepth}`, DEPTH_HINT);
  if (p.includes('\0')) throw new BundleRefused(`${named} has a NUL byte in its path`);
  if (p.includes('\\')) throw new BundleRefused(`${named} has a backslash in its path`);
  if (p.startsWith('/')) throw new BundleRefused(`${named} is an absolute path`);
  if (p.split('/').includes('..')) throw new BundleRefused(`${named} would land outside the release`);
  const rel = path.posix.normalize(p).replace(/\/+$/, '');
  if (rel === '' || rel === '.') throw new BundleRefused(`${named} names the release directory itself`);
  if (rel === '..' || rel.startsWith('../') || rel.startsWith('/')) throw new BundleRefused(`${named} would land outside the release`);
  return rel;
}

function refusalOfType(entry: ReadEntry): BundleRefused {
  const what = REFUSED_TYPES[entry.type] ?? `of type ${entry.type}`;
  const target = entry.linkpath ? ` (to ${quote(entry.linkpath)})` : '';
  return new BundleRefused(`bundle entry ${quote(entry.path)} is ${what}${target}; a bundle holds only files and directories`);
}

/** zlib's errors say little to a user: name what was wrong with the stream. */
function gzipRefusal(err: unknown): Error {
  const e = asError(err) as NodeJS.ErrnoException;
  if (e.code === 'Z_BUF_ERROR') return new BundleRefused(`the bundle was cut short: its gzip stream ends early (${e.message})`);
  if (typeof e.code === 'string' && e.code.startsWith('Z_')) return new BundleRefused(`the bundle is not gzip data (${e.message})`);
  return e;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A path for a message: quoted, and cut short when long (a hostile one may be kilobytes). */
const quote = (s: string) => JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}…` : s);
const mib = (n: number) => (n >= 1024 * 1024 ? `${Math.round(n / (1024 * 1024))} MiB` : `${n} bytes`);
