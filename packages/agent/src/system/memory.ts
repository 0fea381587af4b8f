import { readFile } from 'node:fs/promises';

/** The droplet's memory as the heartbeat reports it and the spare's auto policy decides by. */
export interface DropletMemory {
  totalBytes: number;
  availableBytes: number;
}

/**
 * A memory cgroup's files as read at the root of the droplet's cgroup tree: its limit
 * (`memory.max`, or v1's `memory.limit_in_bytes`), what it uses (`memory.current`,
 * `memory.usage_in_bytes`) and `memory.stat` (whose inactive file pages the kernel gives back first,
 * as MemAvailable counts them).
 */
export interface CgroupMemory {
  limit: string;
  usage: string;
  stat: string;
}

/**
 * The droplet's memory: /proc/meminfo's MemTotal and MemAvailable, within its cgroup's limit if it
 * has one (in a container, a lab droplet, /proc/meminfo is the host's); undefined when meminfo
 * lacks either.
 */
export function memoryOf(meminfo: string, cgroup: CgroupMemory | null | undefined): DropletMemory | undefined {
  const memory = parseMeminfo(meminfo);
  if (!memory || !cgroup) return memory;
  const limit = Number(cgroup.limit.trim());
  const usage = Number(cgroup.usage.trim());
  // v1 writes the cgroup's own pages (inactive_file) and its whole subtree's (total_inactive_file):
  // the droplet's processes are in child cgroups, so the total is what the kernel can give back.
  const inactive = Number((/^total_inactive_file (\d+)$/m.exec(cgroup.stat) ?? /^inactive_file (\d+)$/m.exec(cgroup.stat))?.[1] ?? 0);
  // "max" (v2) or v1's page-rounded 2^63: no limit below the machine's.
  if (!Number.isFinite(limit) || !Number.isFinite(usage) || limit >= memory.totalBytes) return memory;
  return { totalBytes: limit, availableBytes: Math.max(0, Math.min(memory.availableBytes, limit - usage + inactive)) };
}

/** MemTotal and MemAvailable in bytes, or undefined when either is missing (the kernel writes kB). */
export function parseMeminfo(text: string): DropletMemory | undefined {
  const kb = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const totalBytes = kb('MemTotal');
  const availableBytes = kb('MemAvailable');
  return totalBytes === undefined || availableBytes === undefined ? undefined : { totalBytes, availableBytes };
}

/**
 * The memory cgroup at the root of the droplet's cgroup tree, if it has a limit file there: a
 * container's (a lab droplet is an nspawn container under the lab's limit; cgroup v1 or v2). On a
 * VM (a real droplet) the root has none, and /proc/meminfo is the droplet's own.
 */
async function cgroupMemory(): Promise<CgroupMemory | null> {
  for (const [dir, limit, usage] of [['/sys/fs/cgroup', 'memory.max', 'memory.current'], ['/sys/fs/cgroup/memory', 'memory.limit_in_bytes', 'memory.usage_in_bytes']] as const) {
    const read = (file: string) => readFile(`${dir}/${file}`, 'utf8');
    const files = await Promise.all([read(limit), read(usage), read('memory.stat')]).catch(() => undefined);
    if (files) return { limit: files[0], usage: files[1], stat: files[2] };
  }
  return null;
}

/** The droplet's total and available memory (memoryOf of /proc/meminfo and its cgroup), undefined when /proc/meminfo lacks them. */
export async function dropletMemory(): Promise<DropletMemory | undefined> {
  return memoryOf(await readFile('/proc/meminfo', 'utf8').catch(() => ''), await cgroupMemory());
}
