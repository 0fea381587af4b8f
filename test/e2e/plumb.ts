import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { after, before } from 'node:test';
import { execa } from 'execa';
import { AGENT_PORT, pollUntil, type ApiStatus, type StatusResult } from '@plumb/shared';
import { AgentConnection, type RequestBody } from '@plumb/controller/agent/client';
import { tokenFor } from '@plumb/controller/agent/tokens';
import { loadSigningKey } from '@plumb/controller/local/keys';
import { startLab, type Lab, type LabOptions } from '../lab/lab.js';

/** The real `plumb` binary, run as a user would, pointed at the lab by configuration only. */
export const PLUMB_CLI = path.join(path.dirname(createRequire(import.meta.url).resolve('@plumb/controller/package.json')), 'dist/plumb.js');

/** What the person at the terminal sees: exit code, stdout, stderr. */
export interface PlumbRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface PlumbUser {
  /** The user's config dir (XDG_CONFIG_HOME): keys and known droplets live under it. */
  configHome: string;
  env: Record<string, string>;
  /** `input`: what the user pipes into stdin (none otherwise). */
  plumb(args: string[], opts?: { env?: Record<string, string>; timeoutMs?: number; input?: string }): Promise<PlumbRun>;
}

export async function plumbUser(lab: Lab): Promise<PlumbUser> {
  const configHome = await mkdtemp(path.join(os.tmpdir(), 'plumb-user-'));
  return userAt(configHome, {
    DIGITALOCEAN_ACCESS_TOKEN: lab.token,
    PLUMB_DIGITALOCEAN_API_URL: lab.apiUrl,
    XDG_CONFIG_HOME: configHome,
    // The code cache (dist/plumb.js) beside the config: tests leave nothing in the real ~/.cache.
    XDG_CACHE_HOME: path.join(configHome, 'cache'),
    NO_PROXY: '127.0.0.1,localhost,10.213.0.0/16',
    // Empty: not the machine's own. This workplace sets NODE_EXTRA_CA_CERTS to the system's whole CA
    // bundle (for its proxy), and node parses it at every start, ~100 ms before plumb's first line,
    // which users do not pay; plumb talks only to the lab here (the DigitalOcean stand-in is plain
    // HTTP on loopback, agents are pinned). The HTTPS tests pass the lab ACME server's CA themselves.
    NODE_EXTRA_CA_CERTS: '',
  });
}

/**
 * The same user at a second terminal with a copy of the config: the same keys and droplets, but
 * what `plumb status` has shown (its "since the last look") is this copy's own, so tests that run
 * side by side do not take each other's events.
 */
export async function userCopy(user: PlumbUser): Promise<PlumbUser> {
  const configHome = await mkdtemp(path.join(os.tmpdir(), 'plumb-user-'));
  await cp(user.configHome, configHome, { recursive: true });
  return userAt(configHome, { ...user.env, XDG_CONFIG_HOME: configHome, XDG_CACHE_HOME: path.join(configHome, 'cache') });
}

function userAt(configHome: string, env: Record<string, string>): PlumbUser {
  return {
    configHome,
    env,
    plumb: async (args, opts = {}) => {
      const result = await execa(process.execPath, [PLUMB_CLI, ...args], { env: { ...env, ...opts.env }, reject: false, timeout: opts.timeoutMs ?? 900_000, ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }) });
      return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
    },
  };
}

/** `plumb provision --name NAME` as the user would run it; fails the calling hook if it fails. */
export async function provisionDroplet(user: PlumbUser, name: string): Promise<{ id: number; address: string }> {
  const provisioned = await user.plumb(['provision', '--name', name, '--json']);
  if (provisioned.exitCode !== 0) throw new Error(`plumb provision --name ${name} failed:\n${provisioned.stderr}`);
  const { droplet } = JSON.parse(provisioned.stdout) as { droplet: { id: number; ipv4: string } };
  return { id: droplet.id, address: droplet.ipv4 };
}

/** What a test file shares: its lab, its user, and the droplet that user provisioned. */
export interface SharedDroplet {
  lab: Lab;
  user: PlumbUser;
  id: number;
  address: string;
}

/**
 * One lab and one droplet for a whole test file (booting droplets is what costs): registers the
 * file's `before` (start the lab, provision NAME as a user would) and `after` (stop the lab).
 * `ready` gets them in `before`, to keep them and set up more (a first deploy, say).
 */
export function sharedDroplet(name: string, ready: (shared: SharedDroplet) => void | Promise<void>, labOptions: LabOptions = {}): void {
  let lab: Lab | undefined;
  before(async () => {
    lab = await startLab(labOptions);
    const user = await plumbUser(lab);
    const { id, address } = await provisionDroplet(user, name);
    await ready({ lab, user, id, address });
  });
  after(async () => {
    await lab?.stop();
  });
}

/**
 * Waits until the user's droplet answers `plumb status` again (after an agent restart, say), asking
 * it through plumb with a deadline; true when it did. The agent reconciles before it listens, so an
 * answer means the restart is over.
 */
export async function agentAnswersAgain(user: PlumbUser, timeoutMs = 60_000): Promise<boolean> {
  const answered = await pollUntil(
    async () => {
      const status = await user.plumb(['status', '--json']);
      const rows = status.exitCode === 0 || status.stdout.startsWith('[') ? (JSON.parse(status.stdout || '[]') as Array<{ status?: unknown }>) : [];
      return rows.length > 0 && rows.every((r) => r.status !== undefined) ? true : undefined;
    },
    { timeoutMs, intervalMs: 500 },
  );
  return answered === true;
}

/** One API's row in `plumb status --json` of the user's (only) droplet. */
export interface ApiStatusRow {
  name: string;
  release: string;
  workers: Array<{ port: number }>;
  draining: Array<{ port: number }>;
  spare: { port: number; state: string } | null;
  sparePolicy: 'always' | 'never' | 'auto' | null;
  spareWhy: string | null;
}

/**
 * Waits (at most `timeoutMs`) until every API of the user's droplet has its warm spare decided:
 * after a deploy the agent starts one (auto by default) behind the answer, and its env file and
 * unit appear then. A test comparing the droplet before and after a refused command, or counting
 * units, waits for this first. Decided: a spare is there (its env file is written before it shows),
 * or plumb status says why there is none, or the API keeps none (--no-spare).
 */
export async function sparesDecided(user: PlumbUser, timeoutMs = 120_000): Promise<void> {
  const decided = await pollUntil(
    async () => {
      const rows = JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status?: { apis: ApiStatusRow[] } }>;
      return rows[0]?.status?.apis.every((a) => a.spare !== null || a.spareWhy !== null || a.sparePolicy === 'never' || a.sparePolicy === null) ? true : undefined;
    },
    { timeoutMs, intervalMs: 500 },
  );
  assert.ok(decided, `every API's spare is decided within ${timeoutMs / 1000} s: ${(await user.plumb(['status'])).stdout}`);
}

/** A warm spare as `plumb status --json` shows it. */
export type SpareShown = NonNullable<ApiStatus['spare']>;

/**
 * API `name`'s warm spare once `plumb status --json` shows it waiting (loaded, on its fifo) on a
 * port no worker of it has, and `fits`; undefined after `timeoutMs`. `whys` gets every reason for
 * having none that plumb status gave meanwhile.
 */
export async function waitingSpare(user: PlumbUser, name: string, opts: { fits?: (spare: SpareShown) => boolean; timeoutMs?: number; whys?: string[] } = {}): Promise<SpareShown | undefined> {
  return pollUntil(
    async () => {
      const rows = JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status?: StatusResult }>;
      const api = rows[0]?.status?.apis.find((a) => a.name === name);
      if (api?.spareWhy) opts.whys?.push(api.spareWhy);
      const spare = api?.spare;
      return spare?.state === 'waiting' && !api?.workers.some((w) => w.port === spare.port) && (opts.fits ?? (() => true))(spare) ? spare : undefined;
    },
    { timeoutMs: opts.timeoutMs ?? 120_000, intervalMs: 500 },
  );
}

/** API `name`'s line under plumb status's table: its spare, or why it has none (for an assertion's message). */
export const spareLine = async (user: PlumbUser, name: string): Promise<string> => (await user.plumb(['status'])).stdout.split('\n').filter((l) => l.startsWith(`  ${name}: `)).join('; ');

/**
 * API `name`'s warm spare as waitingSpare finds it (within two minutes); fails the test, saying what
 * plumb status says of the API (auto's reason when it keeps none), when there is none.
 */
export async function readySpare(user: PlumbUser, name: string, fits: (spare: SpareShown) => boolean = () => true): Promise<SpareShown> {
  const found = await waitingSpare(user, name, { fits });
  assert.ok(found !== undefined, `a warm spare is running and ready after the deploy: ${await spareLine(user, name)}`);
  return found;
}

/**
 * What `list` prints of the droplet (its files: what a refused command must leave as it was), once
 * every API's spare is decided (sparesDecided), without the lines naming a warm spare's env file: a
 * spare comes and goes with deploys (a failed one may use it up, and the agent starts another),
 * and serves nothing.
 */
export async function withoutSpares(user: PlumbUser, list: () => Promise<string>): Promise<string> {
  await sparesDecided(user);
  const rows = JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status?: { apis: ApiStatusRow[] } }>;
  const spares = new Set((rows[0]?.status?.apis ?? []).flatMap((a) => (a.spare ? [`${a.name}@${a.spare.port}.env`] : [])));
  const listing = await list();
  return listing
    .split('\n')
    .filter((line) => !spares.has(line))
    .join('\n');
}

/** What `plumb status --json` says of API `name` on the user's droplet; undefined when it is not there. */
export async function apiStatus(user: PlumbUser, name: string): Promise<ApiStatusRow | undefined> {
  const status = await user.plumb(['status', '--json']);
  const rows = JSON.parse(status.stdout) as Array<{ status: { apis: ApiStatusRow[] } }>;
  return rows[0]?.status.apis.find((a) => a.name === name);
}

/** An authenticated socket to the user's droplet at `address`, opened as the CLI opens it, for a raw client. */
export async function rawConnection(user: PlumbUser, address: string, port = AGENT_PORT): Promise<AgentConnection> {
  const { droplets } = JSON.parse(await readFile(path.join(user.configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: Array<{ ipv4: string; uuid: string; fingerprint: string }> };
  const droplet = droplets.find((d) => d.ipv4 === address);
  if (!droplet) throw new Error(`the user knows no droplet at ${address}`);
  const key = await loadSigningKey(path.join(user.configHome, 'plumb'));
  return AgentConnection.open({ host: address, port }, droplet.fingerprint, await tokenFor(key, droplet.uuid));
}

/**
 * A request with an upload (a deploy's bundle, an upgrade's package) sent by a raw client, not the
 * CLI, to the user's droplet at `address`: `source` as binary frames (as fast as the agent reads),
 * then `upload-end`; resolves with the agent's answer, rejects with its error.
 */
export async function rawUpload(user: PlumbUser, address: string, request: RequestBody, source: AsyncIterable<Buffer> | Buffer): Promise<unknown> {
  const connection = await rawConnection(user, address);
  try {
    const pending = connection.start(request);
    let bytes = 0;
    let settled = false;
    pending.result.then(() => (settled = true), () => (settled = true));
    for await (const chunk of Buffer.isBuffer(source) ? [source] : source) {
      if (settled) break;
      bytes += chunk.length;
      await connection.sendBinary(chunk);
    }
    if (!settled) connection.notify({ type: 'upload-end', id: pending.id, bytes });
    return await pending.result;
  } finally {
    connection.close();
  }
}
