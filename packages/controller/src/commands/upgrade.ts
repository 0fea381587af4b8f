import { createReadStream } from 'node:fs';
import { AGENT_UPGRADE_WAIT_MS, compareVersions, PlumbError, pollUntil, type HelloHead, type UpgradeResult } from '@plumb/shared';
import { RemoteError } from '../agent/client.js';
import { agentPackage } from '../agent/package.js';
import { connectAgent, eachDroplet, withAgent, type PerDroplet } from '../agent/connect.js';
import { agentProgress, type Context } from '../context.js';
import type { KnownDroplet } from '../local/droplets-state.js';

export interface UpgradeOptions {
  droplet?: string;
  all?: boolean;
  /** Install this plumb's agent even where the droplet has a newer one. */
  force?: boolean;
}

export interface Upgraded {
  from: string;
  to: string;
  /** `upgraded` (or `downgraded` with --force): the new agent confirmed; `up-to-date`: nothing was sent. */
  outcome: 'upgraded' | 'downgraded' | 'up-to-date';
  tookMs: number;
}

const POLL_MS = 1000;

/**
 * `plumb upgrade`: puts this plumb's agent on the droplet(s). The agent checks the package
 * against the sha512 sent with it, installs it beside the running one and restarts into it; the
 * new agent confirms once it serves, or the droplet goes back to the old one by itself. The
 * APIs serve throughout, the pin stays.
 */
export async function upgrade(opts: UpgradeOptions, ctx: Context): Promise<PerDroplet<Upgraded>[]> {
  const pkg = await agentPackage(ctx.env);
  return eachDroplet(ctx, opts, (droplet) => upgradeOne(droplet, pkg, opts.force ?? false, ctx));
}

async function upgradeOne(droplet: KnownDroplet, pkg: Awaited<ReturnType<typeof agentPackage>>, force: boolean, ctx: Context): Promise<Upgraded> {
  const started = Date.now();
  const result = await withAgent(
    ctx,
    String(droplet.id),
    async ({ connection }): Promise<UpgradeResult | Upgraded> => {
      const from = connection.head.agentVersion;
      if (connection.head.protocol === 0) {
        throw new PlumbError('AGENT_OUTDATED', `the agent on ${droplet.name} (${from}) predates plumb upgrade`, `destroy the droplet (\`plumb destroy ${droplet.name}\`) and provision it again`);
      }
      const order = compareVersions(pkg.version, from);
      if (order === 0) return { from, to: pkg.version, outcome: 'up-to-date', tookMs: Date.now() - started };
      if (order < 0 && !force) {
        throw new PlumbError('DOWNGRADE_REFUSED', `the agent on ${droplet.name} is version ${from}, newer than this plumb's ${pkg.version}`, `upgrade plumb on this machine, or add --force to install agent ${pkg.version} anyway`);
      }
      ctx.progress({ step: `sending agent ${pkg.version} to ${droplet.name} (now ${from})` });
      const pending = connection.start<UpgradeResult>({ type: 'upgrade', version: pkg.version, sha512: pkg.sha512, force }, { onProgress: agentProgress(ctx) });
      let settled = false;
      pending.result.then(() => (settled = true), () => (settled = true));
      let bytes = 0;
      for await (const chunk of createReadStream(pkg.tarballPath, { highWaterMark: 64 * 1024 })) {
        if (settled) break;
        bytes += (chunk as Buffer).length;
        await connection.sendBinary(chunk as Buffer);
      }
      if (!settled) connection.notify({ type: 'upload-end', id: pending.id, bytes });
      return pending.result;
    },
    { allowSkew: true },
  );
  if ('tookMs' in result) return result;
  if (result.outcome === 'up-to-date') return { from: result.from, to: result.to, outcome: 'up-to-date', tookMs: Date.now() - started };
  ctx.progress({ step: `waiting for agent ${result.to} on ${droplet.name} to start and confirm` });
  await waitForOutcome(ctx, droplet, result);
  ctx.progress({ step: 'done', done: true });
  return { from: result.from, to: result.to, outcome: compareVersions(result.to, result.from) > 0 ? 'upgraded' : 'downgraded', tookMs: Date.now() - started };
}

/** Asks the droplet's hello until the new agent has confirmed, or the old one is back and says why. */
async function waitForOutcome(ctx: Context, droplet: KnownDroplet, upgrade: UpgradeResult): Promise<void> {
  let last = 'no answer yet';
  const confirmed = await pollUntil(
    async () => {
      let head: HelloHead;
      try {
        const { connection } = await connectAgent(ctx, String(droplet.id), { allowSkew: true });
        head = connection.head;
        connection.close();
      } catch (err) {
        // The agent restarting refuses connections for a moment; a wrong pin is not that.
        if (err instanceof PlumbError && err.code === 'PIN_MISMATCH') throw err;
        last = (err as Error).message;
        return undefined;
      }
      const record = head.upgrade;
      if (record?.id !== upgrade.id) return undefined;
      if (record.outcome === 'confirmed' && head.agentVersion === upgrade.to) return true;
      if (record.outcome === 'rolled-back') {
        throw new RemoteError({
          code: 'UPGRADE_ROLLED_BACK',
          message: `agent ${upgrade.to} did not take over on ${droplet.name}: ${record.reason ?? 'no reason given'}; agent ${head.agentVersion} is back and serving`,
          hint: 'nothing else changed on the droplet; its log (journalctl -u plumb-agent) says more',
          step: 'starting the new agent',
          log: record.log,
        });
      }
      last = `agent ${head.agentVersion}, upgrade ${record.outcome}`;
      return undefined;
    },
    { timeoutMs: AGENT_UPGRADE_WAIT_MS, intervalMs: POLL_MS },
  );
  if (confirmed) return;
  throw new PlumbError('UPGRADE_UNCONFIRMED', `agent ${upgrade.to} on ${droplet.name} did not confirm within ${Math.round(AGENT_UPGRADE_WAIT_MS / 1000)} s (last: ${last})`, '`plumb status` shows which agent runs now; the droplet puts the old one back by itself');
}
