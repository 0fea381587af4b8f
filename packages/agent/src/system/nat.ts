import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { allDone, BOOT_ROUTING_POLL_MS, BOOT_ROUTING_WAIT_MS, NFT_COMMAND_TIMEOUT_MS, NFT_SESSION_COMMANDS, PlumbError, pollUntil } from '@plumb/shared';
import { writeFileAtomic, writeIfChanged } from '@plumb/shared/files';
import { log, mark } from '../log.js';
import { frontPortsOf, ISOLATION_DROP_IN, renderIsolationUnit, renderRoutingUnit } from '../render/nat.js';
import { layout } from './layout.js';
import { NatBaseline, tableListing, type TableListing } from './nat-baseline.js';
import { NftRefused, NftSession } from './nft-session.js';
import * as systemd from './systemd.js';

/**
 * What `nft list table ip plumb` said right after the agent last put its table in place. Listed
 * behind the change, not awaited by it: only natLost reads it, under the same lock as changes.
 */
const applied = new NatBaseline(listTable);

/**
 * Puts the agent's nftables table in place: nft loads it from a copy in /run (memory), replacing
 * the whole table in one transaction, while the copy that lasts is written beside it (what an
 * operator reads, and what plumb-isolation.service loads at boot): its fsyncs are not on the way
 * to the switch. Both are done when this returns, so the state, saved after it, never names a
 * table the saved file lacks. Connections already open keep the worker they were sent to
 * (conntrack), so this never cuts a request.
 */
export async function applyNat(ruleset: string): Promise<void> {
  mark('nat-render');
  const saved = writeFileAtomic(layout.natRules, ruleset, 0o644).then(() => mark('nat-file-written'));
  const loaded = (async () => {
    await mkdir(path.dirname(layout.natLive), { recursive: true, mode: 0o755 });
    await writeFile(layout.natLive, ruleset, { mode: 0o644 });
    return nft(`include "${layout.natLive}"`, ['-f', layout.natLive]);
  })();
  await allDone([saved, loaded]);
  const refused = await loaded;
  if (refused !== null) {
    const missing = refused === NFT_MISSING;
    throw new PlumbError(
      'NFTABLES',
      missing ? 'nft is not installed on the droplet' : `nft refused the agent's rules: ${refused}`,
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

/** The live table as nft lists it: through the agent's nft session, else an nft process. */
async function listTable(): Promise<TableListing> {
  const listed = await viaSession((s) => s.run('list table ip plumb', { output: true }));
  if (typeof listed === 'string') return { kind: 'table', text: listed.trim() };
  if (listed instanceof NftRefused) return /No such file or directory/.test(listed.detail) ? { kind: 'absent' } : { kind: 'unknown' };
  const listing = tableListing(await execa('nft', ['list', 'table', 'ip', 'plumb'], { reject: false, timeout: NFT_COMMAND_TIMEOUT_MS }).catch(() => undefined));
  return listing.kind === 'table' ? { kind: 'table', text: listing.text.trim() } : listing;
}

const NFT_MISSING = 'nft is not installed';

/**
 * Runs one nft command in the agent's nft session, or, when the session cannot (nft without its
 * interactive mode, a session that died or hung), as a process with `args`. null when it ran,
 * else nft's first error line (NFT_MISSING when there is no nft).
 */
async function nft(line: string, args: string[]): Promise<string | null> {
  const done = await viaSession((s) => s.run(line));
  if (done !== undefined) mark('nft-done', { via: 'session' });
  if (done === '') return null;
  if (done instanceof NftRefused) return done.detail;
  const result = await execa('nft', args, { reject: false, timeout: NFT_COMMAND_TIMEOUT_MS });
  mark('nft-done', { via: 'process' });
  if (result.exitCode === 0) return null;
  if (result.exitCode === undefined) return NFT_MISSING;
  const lines = result.stderr.trim().split('\n');
  return (lines.find((l) => l.includes('Error:')) ?? lines[0] ?? '').trim();
}

/**
 * The agent's one `nft -i` (system/nft-session.ts), started when first needed and replaced when
 * it ended or ran NFT_SESSION_COMMANDS commands. `PLUMB_NFT=process` in the agent's environment,
 * or a session that ended before it finished a single command (an nft built without its
 * interactive mode), leaves every command to an nft process.
 */
let session: NftSession | undefined;
/**
 * nft dies with the agent (SIGKILL when its parent goes, util-linux's setpriv): an agent killed or
 * stopped must not wait on its nft for systemd's stop timeout before it starts again.
 */
const NFT_SESSION_ARGV = ['setpriv', '--pdeathsig', 'KILL', 'nft', '-i'];
let sessions = process.env['PLUMB_NFT'] !== 'process';

/** What `use` gave, NftRefused, or undefined when the session could not run it (run it as a process). */
async function viaSession<T>(use: (s: NftSession) => Promise<T>): Promise<T | NftRefused | undefined> {
  if (!sessions) return undefined;
  if (!session?.alive || session.completed >= NFT_SESSION_COMMANDS) {
    session?.close();
    session = new NftSession(NFT_SESSION_ARGV);
  }
  const current = session;
  try {
    return await use(current);
  } catch (err) {
    if (err instanceof NftRefused) return err;
    if (current.completed === 0) {
      sessions = false;
      log.warn('nft has no usable interactive mode; every nftables change runs an nft process', { error: (err as Error).message });
    } else log.warn('the nft session ended; this command runs as an nft process, the next one in a new session', { error: (err as Error).message });
    current.close();
    return undefined;
  }
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
