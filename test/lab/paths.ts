import path from 'node:path';

/**
 * Where the lab keeps things on the host. Everything it creates lives under these three roots
 * (or is named with the `plumb-lab`/`plv` prefixes), which is how `lab down` finds leftovers.
 */
const env = (name: string, fallback: string) => process.env[name] ?? fallback;

/** Slow-to-make things kept between runs: the root filesystem and the shared apt archive. */
export const cacheDir = () => env('PLUMB_LAB_CACHE', '/var/cache/plumb-lab');
/** Per-droplet disks (overlay upper layers) and console logs. */
export const dataDir = () => env('PLUMB_LAB_DATA', '/var/lib/plumb-lab');
/** Records of what is running: address claims, droplet records, lab instances. */
export const runDir = () => env('PLUMB_LAB_RUN', '/run/plumb-lab');

export const aptArchiveDir = () => path.join(cacheDir(), 'apt-archives');
export const netClaimsDir = () => path.join(runDir(), 'net');
export const dropletRecordsDir = () => path.join(runDir(), 'droplets');
export const instancesDir = () => path.join(runDir(), 'instances');
