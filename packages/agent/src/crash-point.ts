import { lstatSync, rmSync } from 'node:fs';
import { CRASH_POINT_KILL_WAIT_MS, pollUntil } from '@plumb/shared';
import { log } from './log.js';
import { layout } from './system/layout.js';

/**
 * Where the lab's crash tests kill the agent (test/e2e/hostile.test.ts), or a process it is about
 * to hand work to (test/e2e/r-packages.test.ts): a moment no signal sent from outside can hit
 * reliably, such as between switching nftables and saving the state.
 */
export type CrashPoint = 'bundle-received' | 'routing-applied' | 'state-saved' | 'spare-handover' | 'before-prune';

/**
 * True, once, if root left a regular file of this name in the agent's root-only state directory
 * (`/var/lib/plumb/crash-points/`). Nothing but root can put it there, and root can kill any
 * process anyway, so this gives no one a new power; the file is removed first, so the point fires
 * once. Without the file this is one failed lstat.
 */
function armed(point: CrashPoint): boolean {
  const file = layout.crashPoint(point);
  try {
    const st = lstatSync(file);
    if (!st.isFile() || st.uid !== 0) return false;
  } catch {
    return false;
  }
  rmSync(file, { force: true });
  return true;
}

/** Dies with SIGKILL here if, and only if, the lab armed `point`. */
export function crashPoint(point: CrashPoint): void {
  if (!armed(point)) return;
  log.warn('dying at a crash point the lab set', { point });
  process.kill(process.pid, 'SIGKILL');
}

/**
 * SIGKILLs the process `pid()` names here if, and only if, the lab armed `point`, and returns once
 * `gone()` says it is (what follows must meet it dead), within CRASH_POINT_KILL_WAIT_MS.
 */
export async function killAtCrashPoint(point: CrashPoint, pid: () => Promise<number | null>, gone: () => Promise<boolean>): Promise<void> {
  if (!armed(point)) return;
  const victim = await pid();
  if (victim === null) return;
  log.warn('killing a process at a crash point the lab set', { point, pid: victim });
  process.kill(victim, 'SIGKILL');
  await pollUntil(async () => ((await gone()) ? true : undefined), { timeoutMs: CRASH_POINT_KILL_WAIT_MS, intervalMs: 10 });
}
