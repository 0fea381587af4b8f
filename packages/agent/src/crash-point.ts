import { lstatSync, rmSync } from 'node:fs';
import { log } from './log.js';
import { layout } from './system/layout.js';

/**
 * Where the lab's crash tests kill the agent (test/e2e/hostile.test.ts): a moment no signal sent
 * from outside can hit reliably, such as between switching nftables and saving the state.
 */
export type CrashPoint = 'bundle-received' | 'routing-applied' | 'state-saved';

/**
 * Dies with SIGKILL here if, and only if, root left a regular file of this name in the agent's
 * root-only state directory (`/var/lib/plumb/crash-points/`). Nothing but root can put it there,
 * and root can kill the agent anyway, so this gives no one a new power; the file is removed first,
 * so the restarted agent does not die again. Without the file this is one failed lstat.
 */
export function crashPoint(point: CrashPoint): void {
  const file = layout.crashPoint(point);
  try {
    const st = lstatSync(file);
    if (!st.isFile() || st.uid !== 0) return;
  } catch {
    return;
  }
  rmSync(file, { force: true });
  log.warn('dying at a crash point the lab set', { point });
  process.kill(process.pid, 'SIGKILL');
}
