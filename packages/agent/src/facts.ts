import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import { execa } from 'execa';
import type { CloudInitStatus } from '@plumb/shared';

/** What the droplet is doing: cloud-init's progress, its swap, its uptime. */

/**
 * cloud-init's status once it has finished: it cannot change again before the next boot, which
 * starts a new agent. Asking costs a Python process (~0.3 s), on every hello and status.
 */
let finished: CloudInitStatus | undefined;

export async function cloudInitStatus(): Promise<CloudInitStatus> {
  if (finished) return finished;
  const status = await askCloudInit();
  if (cloudInitFinished(status)) finished = status;
  return status;
}

async function askCloudInit(): Promise<CloudInitStatus> {
  // `cloud-init status` exits 1 on error and 2 when degraded; its JSON says which, so exit codes are not failures here.
  const result = await execa('cloud-init', ['status', '--format', 'json'], { reject: false, timeout: 30_000 });
  // A host taken over by `plumb adopt` may never have had cloud-init: nothing to wait for there.
  if ((result as { code?: string }).code === 'ENOENT') return { status: 'not installed', stage: null, errors: [] };
  try {
    const json = JSON.parse(result.stdout) as { extended_status?: unknown; status?: unknown; stage?: unknown; errors?: unknown };
    return {
      status: String(json.extended_status ?? json.status ?? 'unknown'),
      stage: typeof json.stage === 'string' ? json.stage : null,
      errors: Array.isArray(json.errors) ? json.errors.map(String) : [],
    };
  } catch {
    return { status: 'unknown', stage: null, errors: [result.stderr.trim() || `cloud-init status exited ${result.exitCode}`] };
  }
}

/** True once cloud-init has finished, with or without errors. */
export const cloudInitFinished = (s: CloudInitStatus) => !['running', 'not started', 'not run', 'unknown'].includes(s.status);

export const SWAP_FILE = '/swapfile';

export async function swapFacts(): Promise<{ path: string; bytes: number; enabled: boolean } | null> {
  const info = await stat(SWAP_FILE).catch(() => undefined);
  if (!info) return null;
  const swaps = await readFile('/proc/swaps', 'utf8').catch(() => '');
  const enabled = swaps.split('\n').slice(1).some((line) => line.split(/\s+/)[0] === SWAP_FILE);
  return { path: SWAP_FILE, bytes: info.size, enabled };
}

export const uptimeSeconds = () => Math.round(os.uptime());
