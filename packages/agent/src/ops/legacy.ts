import { readFile, mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { LEGACY_DRAIN_MS, DRAIN_POLL_MS, pollUntil, type RetireLegacyResult } from '@plumb/shared';
import { log } from '../log.js';
import { layout } from '../system/layout.js';
import * as systemd from '../system/systemd.js';
import { SHARED, type OpContext } from './context.js';
import { openConnections } from './drain.js';
import { applyRouting, requireApi } from './routing.js';

/**
 * `plumb adopt --import`, last step. Each named API is a plumb API by now (deployed from the old
 * one's code, through the health gate), so plumber's do_provision() site goes and plumb's server
 * becomes port 80's default in one nginx reload; requests nginx had already sent to an old unit
 * finish (its port has no connection left, or LEGACY_DRAIN_MS passed, each unit drained at the same
 * time as the others), and then the old units stop
 * and are disabled. Their files stay where they were (the unit file, /var/plumber/NAME's old
 * files, sites-available/): only what served is switched off.
 */
export async function retireLegacy(names: string[], ctx: OpContext): Promise<RetireLegacyResult> {
  const site = await ctx.locks.with(SHARED, async () => {
    const state = ctx.state.get();
    for (const name of names) requireApi(state, name);
    const moved = path.join(layout.disabledSites, `sites-enabled-${path.basename(layout.legacySite)}`);
    await mkdir(layout.disabledSites, { recursive: true, mode: 0o755 });
    const had = await rename(layout.legacySite, moved).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw err;
      },
    );
    try {
      await applyRouting(state);
    } catch (err) {
      if (had) await rename(moved, layout.legacySite);
      await applyRouting(state).catch(() => undefined);
      throw err;
    }
    return had ? moved : null;
  });
  // All at once: one slow drain must not hold the others (N old APIs would otherwise take N × LEGACY_DRAIN_MS).
  const stopped = await Promise.all(
    names.map(async (name) => {
      const unit = layout.legacyUnit(name);
      const port = await legacyPort(name);
      if (port !== null) {
        await pollUntil(async () => ((await openConnections(port)) === 0 ? true : undefined), { timeoutMs: LEGACY_DRAIN_MS, intervalMs: DRAIN_POLL_MS }).catch(() => {
          log.warn('legacy drain cut', { api: name, port });
        });
      }
      await systemd.stopAndDisable(unit);
      return unit;
    }),
  );
  log.info('legacy retired', { apis: names.join(' '), site: site ?? '' });
  return { stopped, site };
}

/** The port do_deploy_api() wrote into the unit (`pr$run(port=8000)`), or null when the unit says none. */
async function legacyPort(name: string): Promise<number | null> {
  const unit = await readFile(layout.legacyUnitFile(name), 'utf8').catch(() => '');
  const port = /\bport\s*=\s*(\d{1,5})\b/.exec(unit)?.[1];
  return port === undefined ? null : Number(port);
}
