import { mkdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '@plumb/shared/files';

/**
 * The controller's local files: its signing key and what it knows of its droplets, under the
 * user's config dir (XDG), private to the user (directory 0700, files 0600).
 */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  // A relative XDG_CONFIG_HOME is ignored, as XDG says: it would depend on where plumb was run.
  const xdg = env['XDG_CONFIG_HOME'];
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.config');
  return path.join(base, 'plumb');
}

export async function readJson(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  return text === undefined ? undefined : JSON.parse(text);
}

/** Private and atomic: a crash never leaves half a file, and nobody else can read it. */
export async function writePrivateJson(file: string, value: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, 0o600);
}

/**
 * Writes a private file only if none exists yet; false when another process made it first
 * (the file appears whole: written aside, then linked into place, which fails if taken).
 */
export async function createPrivateJson(file: string, value: unknown): Promise<boolean> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  return writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, 0o600, { exclusive: true });
}
