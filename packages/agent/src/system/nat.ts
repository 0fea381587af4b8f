import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { execa } from 'execa';
import { BOOT_ROUTING_POLL_MS, BOOT_ROUTING_WAIT_MS, PlumbError, pollUntil } from '@plumb/shared';
import { writeFileAtomic, writeIfChanged } from '@plumb/shared/files';
import { log } from '../log.js';
import { frontPortsOf, ISOLATION_DROP_IN, renderIsolationUnit, renderRoutingUnit } from '../render/nat.js';
import { layout } from './layout.js';
import { NatBaseline, tableListing, type TableListing } from './nat-baseline.js';
import * as systemd from './systemd.js';

/**
 * What `nft list table ip plumb` said right after the agent last put its table in place. Listed
 * behind the change, not awaited by it: the process took as long as `nft -f` itself (~0.1 s under
 * load) on a deploy's way to its answer. Only natLost reads it, under the same lock as changes.
 */
const applied = new NatBaseline(listTable);

/**
 * Puts the agent's nftables table in place: the file first (so an operator can read what is
 * live, and plumb-isolation.service loads it at boot), then `nft -f`, which replaces the whole
 * table in one transaction. Connections already open keep the worker they were sent to
 * (conntrack), so this never cuts a request.
 */
export async function applyNat(ruleset: string): Promise<void> {
  await writeFileAtomic(layout.natRules, ruleset, 0o644);
  const result = await execa('nft', ['-f', layout.natRules], { reject: false, timeout: 30_000 });
  if (result.exitCode !== 0) {
    const missing = result.exitCode === undefined;
    throw new PlumbError(
      'NFTABLES',
      missing ? 'nft is not installed on the droplet' : `nft refused the agent's rules: ${result.stderr.trim().split('\n')[0] ?? ''}`,
      missing ? 'install it as root (apt-get install nftables), then try again' : 'nothing was changed; this is a bug in plumb-agent, please report it',
    );
  }
  applied.applied();
  // Serving is already right; only the next boot would miss the unit, so this does not fail the change.
  await ensureRoutingUnit().catch((err: Error) => log.warn('could not install plumb-isolation.service and plumb-routing.service', { error: err.message }));
}

/**
 * True when the live table is no longer what the agent put there: `nft flush ruleset` by hand, a
 * firewall tool's reload, a restored nftables.conf. Compared with the kernel's own listing taken
 * after the last apply, so no parsing of nft's output is needed.
 */
export const natLost = (): Promise<boolean> => applied.lost();

async function listTable(): Promise<TableListing> {
  return tableListing(await execa('nft', ['list', 'table', 'ip', 'plumb'], { reject: false, timeout: 30_000 }).catch(() => undefined));
}

/** Installed by whichever agent version first applies a table, so upgraded droplets get them too. */
async function ensureRoutingUnit(): Promise<void> {
  const files: Array<[string, string]> = [
    [layout.isolationUnit, renderIsolationUnit(layout.natRules)],
    [layout.isolationDropIn, ISOLATION_DROP_IN],
    [layout.routingUnit, renderRoutingUnit(layout.natRules, [process.execPath, process.argv[1] ?? ''])],
  ];
  let changed = false;
  for (const [file, content] of files) if (await writeIfChanged(file, content, 0o644)) changed = true;
  if (!changed) return;
  await systemd.daemonReload();
  // Active from now on (it loads the table just applied): a worker's start (--no-block) that pulled
  // it in later would load the file a moment after the agent, racing with the agent's next switch.
  await systemd.enableNow('plumb-isolation.service');
  await systemd.enable('plumb-routing.service');
}

/**
 * `plumb-agent --wait-for-workers` (plumb-routing.service, at boot): returns once a TCP
 * connection to each front port in the saved table is accepted (the table sends it to a worker
 * that listens), or after BOOT_ROUTING_WAIT_MS whatever happens: nginx must start anyway.
 */
export async function waitForWorkers(): Promise<void> {
  const ports = frontPortsOf(await readFile(layout.natRules, 'utf8').catch(() => ''));
  const waiting = new Set(ports);
  await pollUntil(
    async () => {
      for (const port of [...waiting]) if (await accepts(port)) waiting.delete(port);
      return waiting.size === 0 ? true : undefined;
    },
    { timeoutMs: BOOT_ROUTING_WAIT_MS, intervalMs: BOOT_ROUTING_POLL_MS },
  );
  if (waiting.size > 0) log.warn('some APIs had no worker listening when nginx was let start', { front_ports: [...waiting].join(' ') });
  else log.info('every API has a worker listening', { front_ports: ports.join(' ') });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, timeout: 1000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}
