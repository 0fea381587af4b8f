import { readFile } from 'node:fs/promises';
import { memoryOf, type CgroupMemory } from '../ops/spare-policy.js';

/**
 * The memory cgroup at the root of the droplet's cgroup tree, if it has a limit file there: a
 * container's (a lab droplet is an nspawn container under the lab's limit; cgroup v1 or v2). On a
 * VM (a real droplet) the root has none, and /proc/meminfo is the droplet's own.
 */
export async function cgroupMemory(): Promise<CgroupMemory | null> {
  for (const [dir, limit, usage] of [['/sys/fs/cgroup', 'memory.max', 'memory.current'], ['/sys/fs/cgroup/memory', 'memory.limit_in_bytes', 'memory.usage_in_bytes']] as const) {
    const read = (file: string) => readFile(`${dir}/${file}`, 'utf8');
    const files = await Promise.all([read(limit), read(usage), read('memory.stat')]).catch(() => undefined);
    if (files) return { limit: files[0], usage: files[1], stat: files[2] };
  }
  return null;
}

/** What the droplet's memory reads as: /proc/meminfo and its memory cgroup, as the spare's auto policy reads them. */
export async function memoryReading(): Promise<{ meminfo: string; cgroup: CgroupMemory | null }> {
  return { meminfo: await readFile('/proc/meminfo', 'utf8').catch(() => ''), cgroup: await cgroupMemory() };
}

/** The droplet's total and available memory (memoryOf), undefined when /proc/meminfo lacks them. */
export async function dropletMemory(): Promise<{ totalBytes: number; availableBytes: number } | undefined> {
  const { meminfo, cgroup } = await memoryReading();
  return memoryOf(meminfo, cgroup);
}
