import { X509Certificate } from 'node:crypto';
import { readdir, readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Heartbeat } from '@plumb/shared';
import type { AgentState } from '../state.js';
import { layout } from '../system/layout.js';
import { dropletMemory } from '../system/memory.js';
import { unitStates, type UnitState } from '../system/systemd.js';

/** certbot's live certificates, one directory per certificate name. */
export const CERTIFICATES_DIR = '/etc/letsencrypt/live';
/** Linux reports process start times in USER_HZ ticks, 100 per second on every architecture Debian ships. */
const USER_HZ = 100;

/** VmRSS from /proc/PID/status, in bytes. */
export function parseVmRss(status: string): number | null {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : null;
}

/** /proc/PID/stat's fields from the third on: the command name (field 2) is in parentheses and may hold spaces. */
const statFields = (stat: string) => stat.slice(stat.lastIndexOf(')') + 2).split(' ');

/** CPU seconds a process has used, user and system (/proc/PID/stat fields 14 and 15). */
export function processCpuSeconds(stat: string): number | null {
  const fields = statFields(stat);
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks / USER_HZ : null;
}

/** A process's age from /proc/PID/stat (start time, field 22) and /proc/uptime, in seconds. */
export function processUptime(stat: string, uptime: string): number | null {
  const fields = statFields(stat);
  const startTicks = Number(fields[19]);
  const since = Number(uptime.split(' ')[0]);
  if (!Number.isFinite(startTicks) || !Number.isFinite(since)) return null;
  return Math.max(0, Math.round(since - startTicks / USER_HZ));
}

/** A process's VmRSS in bytes; null once it is gone. */
export const residentBytes = async (pid: number): Promise<number | null> => parseVmRss(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''));

async function workerFacts(api: string, port: number, unit: UnitState | undefined): Promise<Heartbeat['workers'][number]> {
  const pid = unit?.pid ?? null;
  if (pid === null) return { api, port, pid, rssBytes: null, uptimeSeconds: null };
  const read = (file: string) => readFile(file, 'utf8').catch(() => '');
  const [status, stat, uptime] = await Promise.all([read(`/proc/${pid}/status`), read(`/proc/${pid}/stat`), read('/proc/uptime')]);
  return { api, port, pid, rssBytes: parseVmRss(status), uptimeSeconds: stat && uptime ? processUptime(stat, uptime) : null };
}

/** The certificates certbot keeps, with their expiry; none when HTTPS was never set up. */
export async function certificates(dir = CERTIFICATES_DIR, now = Date.now()): Promise<Heartbeat['certificates']> {
  const names = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const found: Heartbeat['certificates'] = [];
  for (const entry of names) {
    if (!entry.isDirectory() && !entry.isSymbolicLink()) continue;
    const pem = await readFile(path.join(dir, entry.name, 'cert.pem'), 'utf8').catch(() => undefined);
    if (pem === undefined) continue;
    try {
      const cert = new X509Certificate(pem);
      const expires = Date.parse(cert.validTo);
      const domains = (cert.subjectAltName ?? '').split(',').map((s) => s.trim()).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4));
      found.push({ name: entry.name, domains, expiresAt: new Date(expires).toISOString(), daysLeft: Math.round(((expires - now) / 86_400_000) * 10) / 10 });
    } catch {
      continue;
    }
  }
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The droplet's vital signs now: load, memory, disk, each worker's memory and age, certificates.
 * `units`: the workers' states when the caller has just asked systemd (status); else one `systemctl show` for all.
 */
export async function heartbeat(state: AgentState, lastEventId: number, units?: Map<string, UnitState>): Promise<Heartbeat> {
  const all = Object.values(state.apis).flatMap((api) => api.workers.map((w) => ({ api: api.name, port: w.port, unit: layout.instanceUnit(api.name, w.port) })));
  const known = units ?? (await unitStates(all.map((w) => w.unit)).catch(() => new Map<string, UnitState>()));
  const workers = await Promise.all(all.map((w) => workerFacts(w.api, w.port, known.get(w.unit))));
  const disk = await statfs('/');
  return {
    time: new Date().toISOString(),
    lastEventId,
    load: os.loadavg(),
    // As the spare's auto policy reads it (plumb status shows both): a lab droplet's cgroup, not the host's memory.
    memory: (await dropletMemory()) ?? { totalBytes: os.totalmem(), availableBytes: os.freemem() },
    disk: { totalBytes: disk.blocks * disk.bsize, freeBytes: disk.bavail * disk.bsize },
    workers: workers.sort((a, b) => a.api.localeCompare(b.api) || a.port - b.port),
    certificates: await certificates(),
  };
}
