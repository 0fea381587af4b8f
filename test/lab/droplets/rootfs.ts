import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../errors.js';
import { alive, run, sleep } from '../host.js';
import { cacheDir } from '../paths.js';

/**
 * The droplet image: a Debian 13 minbase root filesystem made once by debootstrap and cached.
 * Every droplet boots an overlay of it, so it is never written after it is complete.
 */

/** Bump when the recipe below changes, so caches made by the old recipe are not used. */
const RECIPE_VERSION = 1;
const SUITE = 'trixie';
const MIRROR = 'http://deb.debian.org/debian';
const PACKAGES = [
  'systemd-sysv', 'cloud-init', 'python3-cffi-backend', 'openssh-server', 'ca-certificates',
  'iproute2', 'dbus', 'curl',
];
const COMPLETE_MARK = '.plumb-lab-complete';
const BUILD_TIMEOUT_MS = 15 * 60_000;

/** cloud-init as on a DigitalOcean image, but fed by the NoCloud seed and leaving the network to the lab. */
const CLOUD_CFG = `# Written by the plumb lab: droplets get user-data from a NoCloud seed; the lab sets the address.
datasource_list: [NoCloud, None]
network: {config: disabled}
`;

export function rootfsDir(): string {
  return path.join(cacheDir(), `rootfs-${SUITE}-v${RECIPE_VERSION}`);
}

export function rootfsReady(): boolean {
  return existsSync(path.join(rootfsDir(), COMPLETE_MARK));
}

/** Returns the cached root filesystem, building it first if needed (about 90 s, 400 MB). */
export async function ensureRootfs(log: (line: string) => void = () => {}): Promise<string> {
  const dir = rootfsDir();
  if (rootfsReady()) return dir;
  await mkdir(cacheDir(), { recursive: true });
  const lock = `${dir}.lock`;
  const deadline = Date.now() + BUILD_TIMEOUT_MS;
  while (!(await takeLock(lock))) {
    if (rootfsReady()) return dir;
    if (Date.now() > deadline) throw new LabError(`gave up waiting for another process building ${dir}`, `remove ${lock} if no build is running`);
    await sleep(1000);
  }
  try {
    if (rootfsReady()) return dir;
    const tmp = `${dir}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    log(`building the droplet root filesystem (debootstrap ${SUITE}, once; cached in ${dir})`);
    await run('debootstrap', ['--variant=minbase', `--include=${PACKAGES.join(',')}`, SUITE, tmp, MIRROR], { timeoutMs: BUILD_TIMEOUT_MS });
    await writeFile(path.join(tmp, 'etc/cloud/cloud.cfg.d/90-plumb-lab.cfg'), CLOUD_CFG);
    // Each droplet gets its own machine id at creation; an empty file makes systemd treat the image as unprovisioned.
    await writeFile(path.join(tmp, 'etc/machine-id'), '');
    await rm(path.join(tmp, 'var/cache/apt/archives'), { recursive: true, force: true });
    await mkdir(path.join(tmp, 'var/cache/apt/archives/partial'), { recursive: true });
    await writeFile(path.join(tmp, COMPLETE_MARK), `${new Date().toISOString()}\n`);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    return dir;
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** A lock directory holding the owner's pid; a lock whose owner died is taken over. */
async function takeLock(lock: string): Promise<boolean> {
  try {
    await mkdir(lock);
    await writeFile(path.join(lock, 'pid'), String(process.pid));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const owner = Number(await readFile(path.join(lock, 'pid'), 'utf8').catch(() => '0'));
    if (owner > 0 && !alive(owner)) {
      await rm(lock, { recursive: true, force: true });
    }
    return false;
  }
}
