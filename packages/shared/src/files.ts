import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PlumbError } from './errors.js';
import { LOCAL_STATE_LOCK_WAIT_MS } from './limits.js';
import { pollUntil } from './poll.js';

/**
 * The one way plumb writes a state file, on the droplet and on the user's machine (`@plumb/shared/files`,
 * kept out of the main entry, which does no I/O): written beside the file, fsynced, renamed over
 * it, then the directory fsynced, so a reader or a crash sees the old content or the new, never half.
 * `exclusive`: only if no file is there yet (linked into place, which fails if taken); returns
 * false when another process made it first. Returns true otherwise.
 */
export async function writeFileAtomic(file: string, content: string, mode = 0o600, opts: { exclusive?: boolean } = {}): Promise<boolean> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', mode);
  let placed = true;
  try {
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (opts.exclusive) placed = await link(tmp, file).then(() => true, (err: NodeJS.ErrnoException) => (err.code === 'EEXIST' ? false : Promise.reject(err)));
    else await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
  return placed;
}

/** Writes a file (atomically, making its directory) only if its content differs; true if it did. */
export async function writeIfChanged(file: string, content: string, mode: number): Promise<boolean> {
  if ((await readFile(file, 'utf8').catch(() => undefined)) === content) return false;
  await mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, content, mode);
  return true;
}

/**
 * Runs `change` holding FILE.lock, so two processes changing one file (a provision and a
 * destroy at once) never lose each other's write. The lock file holds the holder's pid; one left
 * by a process that is gone is taken over.
 */
export async function withFileLock<T>(file: string, change: () => Promise<T>, waitMs = LOCAL_STATE_LOCK_WAIT_MS): Promise<T> {
  const lock = `${file}.lock`;
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  let holder = 0;
  const taken = await pollUntil(
    async () => {
      try {
        await writeFile(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      holder = Number(await readFile(lock, 'utf8').catch(() => ''));
      // Left by a process that is gone: taken over at the next try.
      if (Number.isInteger(holder) && holder > 0 && !alive(holder)) await rm(lock, { force: true });
      return undefined;
    },
    // Short pauses first: most holders are done within milliseconds.
    { timeoutMs: waitMs, intervalMs: (attempt) => Math.min(5 * 2 ** attempt, 200) },
  );
  if (!taken) {
    throw new PlumbError('STATE_LOCKED', `another plumb process (pid ${holder || 'unknown'}) has held ${lock} for ${waitMs / 1000} s`, `wait for it to finish; if no plumb is running, remove ${lock}`);
  }
  try {
    return await change();
  } finally {
    await rm(lock, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
