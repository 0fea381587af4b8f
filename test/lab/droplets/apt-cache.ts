import { link, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { aptArchiveDir } from '../paths.js';

/**
 * The apt archive lab droplets share, so a test suite downloads each .deb once. Each droplet gets
 * its own archive directory, filled with hard links to the shared .debs (instant, no copy), because
 * apt locks its archive directory: droplets booting at the same time on one shared directory fail
 * with "Could not get lock /var/cache/apt/archives/lock". What a droplet downloaded is linked back
 * into the shared archive when it is deleted.
 */
export const dropletArchiveDir = (dropletDir: string) => path.join(dropletDir, 'apt-archives');

const debs = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.deb'));

export async function seedArchive(dropletDir: string): Promise<string> {
  const dir = dropletArchiveDir(dropletDir);
  await mkdir(path.join(dir, 'partial'), { recursive: true });
  for (const deb of await debs(aptArchiveDir())) {
    await link(path.join(aptArchiveDir(), deb), path.join(dir, deb)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  return dir;
}

/** Links the droplet's new .debs into the shared archive (whole files only: apt renames them in from partial/). */
export async function harvestArchive(dropletDir: string): Promise<void> {
  const shared = aptArchiveDir();
  await mkdir(shared, { recursive: true });
  const known = new Set(await debs(shared));
  for (const deb of await debs(dropletArchiveDir(dropletDir))) {
    if (known.has(deb)) continue;
    const tmp = path.join(shared, `.${deb}.${process.pid}.tmp`);
    await link(path.join(dropletArchiveDir(dropletDir), deb), tmp);
    await rename(tmp, path.join(shared, deb)).catch(() => rm(tmp, { force: true }));
  }
}
