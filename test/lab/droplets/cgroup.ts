import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A droplet's size as cgroup limits (memory, CPU quota). The host may run cgroup v1 (as these
 * machines do: no systemd on the host) or the unified v2 hierarchy; both are handled. The
 * droplet's nspawn process joins the groups before it execs, so the whole container is inside.
 */

const ROOT = '/sys/fs/cgroup';
const PREFIX = 'plumb-lab-';
const CPU_PERIOD_US = 100_000;

export interface Limits {
  memoryBytes: number;
  vcpus: number;
}

interface Group {
  /** Directory of the group; a process joins by writing its pid to cgroup.procs there. */
  dir: string;
  settings: Array<[file: string, value: string]>;
}

function isUnified(): boolean {
  return existsSync(path.join(ROOT, 'cgroup.controllers'));
}

/** This process's own place in a v1 hierarchy, so the groups nest where we are allowed to write. */
function ownV1Path(controller: string): string {
  const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  return line?.split(':')[2] ?? '/';
}

function groupsFor(name: string, limits: Limits): Group[] {
  const quota = String(limits.vcpus * CPU_PERIOD_US);
  if (isUnified()) {
    return [{ dir: path.join(ROOT, `${PREFIX}${name}`), settings: [['memory.max', String(limits.memoryBytes)], ['cpu.max', `${quota} ${CPU_PERIOD_US}`]] }];
  }
  return [
    { dir: path.join(ROOT, 'memory', ownV1Path('memory'), `${PREFIX}${name}`), settings: [['memory.limit_in_bytes', String(limits.memoryBytes)]] },
    { dir: path.join(ROOT, 'cpu', ownV1Path('cpu'), `${PREFIX}${name}`), settings: [['cpu.cfs_period_us', String(CPU_PERIOD_US)], ['cpu.cfs_quota_us', quota]] },
  ];
}

/** Creates the groups and returns their cgroup.procs files for the droplet's process to join. */
export async function createLimits(name: string, limits: Limits): Promise<string[]> {
  const procs: string[] = [];
  for (const group of groupsFor(name, limits)) {
    await mkdir(group.dir, { recursive: true });
    for (const [file, value] of group.settings) await writeFile(path.join(group.dir, file), value);
    procs.push(path.join(group.dir, 'cgroup.procs'));
  }
  return procs;
}

/** Removes the groups (they must be empty: call after the droplet's processes are gone). */
export async function removeLimits(name: string): Promise<void> {
  for (const group of groupsFor(name, { memoryBytes: 0, vcpus: 0 })) await removeTree(group.dir);
}

/** Reads back the memory limit a droplet's processes are under, for tests and `lab status`. */
export async function memoryLimit(name: string): Promise<number | undefined> {
  const group = groupsFor(name, { memoryBytes: 0, vcpus: 0 })[0];
  if (!group) return undefined;
  const file = isUnified() ? 'memory.max' : 'memory.limit_in_bytes';
  const text = await readFile(path.join(group.dir, file), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : Number(text.trim());
}

/** Every lab group on the host (for `lab down` after a crash). */
export async function sweepLimits(): Promise<string[]> {
  const parents = isUnified() ? [ROOT] : [path.join(ROOT, 'memory', ownV1Path('memory')), path.join(ROOT, 'cpu', ownV1Path('cpu'))];
  const removed: string[] = [];
  for (const parent of parents) {
    const entries = await readdir(parent).catch(() => [] as string[]);
    for (const entry of entries.filter((e) => e.startsWith(PREFIX))) {
      await removeTree(path.join(parent, entry));
      removed.push(`cgroup ${path.join(parent, entry)}`);
    }
  }
  return removed;
}

/** The container's systemd makes child groups of its own; rmdir must go deepest first. */
async function removeTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) if (entry.isDirectory()) await removeTree(path.join(dir, entry.name));
  await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
