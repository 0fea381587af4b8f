import { spawn } from 'node:child_process';
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { access, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { x as extractTar } from 'tar';
import {
  ADOPT_LOG_LINES,
  ADOPT_SSH_CONNECT_TIMEOUT_S,
  ADOPT_SSH_SESSION_TIMEOUT_MS,
  AGENT_PORT,
  ApiName,
  BUNDLE_MAX_BYTES,
  checkInput,
  DropletName,
  ENROLMENT_SECRET_BYTES,
  DigitalOceanError,
  GroupName,
  groupTag,
  isErrorCode,
  PlumbError,
  ValidationError,
  type RetireLegacyResult,
} from '@plumb/shared';
import { withAgent } from '../agent/connect.js';
import { AgentConnection, RemoteError } from '../agent/client.js';
import { agentPackage } from '../agent/package.js';
import { tokenFor } from '../agent/tokens.js';
import { renderAdoptScript } from '../adopt-script.js';
import { dropletBase } from '../cloud-init.js';
import type { Context } from '../context.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { loadOrCreateSigningKey } from '../local/keys.js';
import { fromEnv } from '../digitalocean/client.js';
import { installAndEnrol, PLUMB_TAG, type ProvisionResult } from './provision.js';

export interface AdoptOptions {
  /** root@HOST */
  target: string;
  sshKey?: string;
  name?: string;
  port?: number;
  /** Accept the host's SSH key on first contact (ssh's accept-new) instead of asking. */
  yes?: boolean;
  /** Take over a host that serves things plumb would overwrite; the changes are listed. */
  force?: boolean;
  /** Take over the APIs plumber's do_provision()/do_deploy_api() left there as plumb APIs. */
  import?: boolean;
  /** Whether ssh can ask the person at the terminal (host key on first contact, a key's passphrase). */
  interactive: boolean;
  /** A DigitalOcean droplet is tagged into this group too (`provision --group`'s tag). */
  group?: string;
}

export interface AdoptResult extends Omit<ProvisionResult, 'cloudInit' | 'example'> {
  example: null;
  /** What adopt changed on the host that was not plumb's. */
  changes: string[];
  /** With --import: each old API, now a plumb API with its first release. */
  imported: ImportedApi[];
  /** What DigitalOcean's metadata service said the host is, and whether it was tagged (null: not a DigitalOcean droplet). */
  digitalOcean: Recognized | null;
}

export interface Recognized {
  id: number;
  /** Tagged `plumb` (and the group's tag): `plumb droplets`, groups and `destroy` treat it as one of plumb's. */
  tagged: boolean;
  /** Why it was not tagged, and how to tag it later. */
  note?: string;
}

export interface ImportedApi {
  name: string;
  path: string;
  release: string;
  forwarded: boolean;
}

/** An ssh_config file plumb's SSH reads instead of ~/.ssh/config (known_hosts, keys, jump hosts). */
export const SSH_CONFIG_VARIABLE = 'PLUMB_SSH_CONFIG';

const TARGET = /^root@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$/;

/**
 * A Debian 13 host plumb did not create becomes a plumb droplet: one SSH session (the user's own
 * OpenSSH, their keys and known_hosts) checks it, installs the same base as provision's user-data
 * and starts the bootstrap; then, without SSH, the agent package is sent, checked and enrolled
 * exactly as on a provisioned droplet.
 */
export async function adopt(opts: AdoptOptions, ctx: Context): Promise<AdoptResult> {
  const started = Date.now();
  const host = TARGET.exec(opts.target)?.[1]?.replace(/^\[(.*)\]$/, '$1');
  if (host === undefined) throw new PlumbError('ADOPT_TARGET', `"${opts.target}" is not root@HOST`, 'plumb installs as root: plumb adopt root@203.0.113.7 (or root@server.example.com)');
  if (opts.sshKey !== undefined) await access(opts.sshKey).catch(() => { throw new ValidationError(`no SSH key file at ${opts.sshKey}`, 'give the private key file, e.g. --ssh-key ~/.ssh/id_ed25519'); });
  if (opts.group !== undefined) checkInput(GroupName, opts.group, 'group name');
  const known = await ctx.droplets.list();
  const untagged = known.find((d) => d.ipv4 === host && d.external && d.id > 0 && d.fingerprint !== null);
  if (untagged) return tagAgain(untagged, opts, ctx, started);
  // An adopt of this host cut short before its agent was enrolled: this one takes its place (and
  // adopt-check.sh replaces the agent it left, which no controller ever drove).
  const halfDone = known.find((d) => d.ipv4 === host && d.external === true && d.fingerprint === null);
  const name = opts.name ?? halfDone?.name ?? (DropletName.safeParse(host).success ? host : `adopted-${randomBytes(3).toString('hex')}`);
  checkInput(DropletName, name, 'droplet name');
  const others = known.filter((d) => d !== halfDone);
  if (others.some((d) => d.name === name || d.ipv4 === host)) throw new ValidationError(`plumb already knows a droplet named ${name} or at ${host}`, 'choose another --name, or `plumb forget` the old one');

  const key = await loadOrCreateSigningKey(ctx.configDir);
  const dropletUuid = randomUUID();
  const enrolmentSecret = randomBytes(ENROLMENT_SECRET_BYTES).toString('hex');
  const pkg = await agentPackage(ctx.env);
  const base = dropletBase({
    agentConfig: { dropletUuid, dropletName: name, port: AGENT_PORT, controllerKeys: [key.publicKey], enrolmentSecret },
    agentPackage: { version: pkg.version, sha512: pkg.sha512, bytes: pkg.bytes },
  });

  ctx.progress({ step: `installing plumb's base on ${host} over SSH`, detail: 'R, plumber, nginx, ufw, certbot' });
  const report = await runOverSsh(host, opts, renderAdoptScript({ base, agentPort: AGENT_PORT, force: opts.force ?? false, import: opts.import ?? false, group: opts.group !== undefined }), ctx);

  if (report.dropletId !== undefined && others.some((d) => d.id === report.dropletId)) throw new ValidationError(`plumb already knows DigitalOcean droplet ${report.dropletId} (${host}) under another address; plumb's base is installed on ${host} but its agent was not enrolled`, 'see `plumb droplets`; `plumb forget` the old record, then adopt again with --force');
  // External until it is tagged, so a failure before then says `forget`, never `destroy`, for a server the user had.
  const record: KnownDroplet = {
    name,
    id: report.dropletId ?? -randomInt(1, 2 ** 31),
    uuid: dropletUuid,
    ipv4: host,
    agentPort: AGENT_PORT,
    fingerprint: null,
    region: 'external',
    size: 'external',
    createdAt: new Date().toISOString(),
    external: true,
  };
  if (halfDone) await ctx.droplets.forget(halfDone.id);
  await ctx.droplets.save(record);
  await installAndEnrol(record, enrolmentSecret, pkg, key, ctx);
  const imported = await importLegacy(record, report.imports, ctx);
  const digitalOcean = report.dropletId === undefined ? null : await recognize(record, opts, ctx);
  return summary(record, { changes: report.changes, imported, digitalOcean }, ctx, started);
}

/** Provision's summary of a droplet whose agent is enrolled, with adopt's own parts. */
async function summary(record: KnownDroplet, parts: Pick<AdoptResult, 'changes' | 'imported' | 'digitalOcean'>, ctx: Context, started: number): Promise<AdoptResult> {
  const key = await loadOrCreateSigningKey(ctx.configDir);
  const connection = await AgentConnection.open({ host: record.ipv4, port: record.agentPort }, record.fingerprint!, await tokenFor(key, record.uuid));
  try {
    const facts = await connection.request<{ swap: ProvisionResult['swap']; agentVersion: string }>({ type: 'facts' });
    ctx.progress({ step: 'done', done: true });
    return { droplet: record, example: null, agentVersion: facts.agentVersion, swap: facts.swap, ...parts, tookMs: Date.now() - started };
  } finally {
    connection.close();
  }
}

/** Adopt of a host adopted before as a DigitalOcean droplet that was not tagged then: only the tagging, no SSH. */
async function tagAgain(record: KnownDroplet, opts: AdoptOptions, ctx: Context, started: number): Promise<AdoptResult> {
  const idle = [opts.import && '--import', opts.force && '--force', opts.name !== undefined && opts.name !== record.name && '--name'].filter((f): f is string => typeof f === 'string');
  if (idle.length > 0) {
    throw new ValidationError(`${record.name} (${record.ipv4}) is adopted already, so adopt now only tags it on DigitalOcean (no SSH) and ${idle.join(', ')} would do nothing; nothing was changed`, `run it without ${idle.join(', ')}; \`plumb deploy\` adds APIs to it`);
  }
  const digitalOcean = await recognize(record, opts, ctx);
  if (!digitalOcean.tagged) throw new PlumbError('ADOPT_NOT_TAGGED', `${record.name} is DigitalOcean droplet ${record.id}, adopted already, and is still not tagged: ${digitalOcean.note ?? ''}`, 'fix that and run the same `plumb adopt` again');
  return summary(record, { changes: [], imported: [], digitalOcean }, ctx, started);
}

/**
 * The host's metadata said it is DigitalOcean droplet `record.id`. With a token, DigitalOcean must
 * list that droplet at the address adopted (a host that only claims an id is not trusted with
 * someone else's droplet); then it gets provision's tags and becomes a droplet like the others.
 * Anything short of that leaves it external, with the reason and how to tag it later.
 */
async function recognize(record: KnownDroplet, opts: AdoptOptions, ctx: Context): Promise<Recognized> {
  const { id } = record;
  const later = `set DIGITALOCEAN_ACCESS_TOKEN and run \`plumb adopt root@${record.ipv4}${opts.group === undefined ? '' : ` --group ${opts.group}`}\` again to tag it`;
  if (!ctx.env.DIGITALOCEAN_ACCESS_TOKEN?.trim()) return { id, tagged: false, note: `no DIGITALOCEAN_ACCESS_TOKEN: ${later}` };
  ctx.progress({ step: `tagging DigitalOcean droplet ${id}` });
  const api = fromEnv(ctx.env);
  try {
    const droplet = await api.getDroplet(id);
    const addresses = (await lookup(record.ipv4, { all: true })).map((a) => a.address);
    if (droplet.publicIpv4 === undefined || !addresses.includes(droplet.publicIpv4)) {
      return { id, tagged: false, note: `DigitalOcean lists droplet ${id} at ${droplet.publicIpv4 ?? 'no address'}, not at ${record.ipv4}: not tagged` };
    }
    await api.tagDroplet(id, [PLUMB_TAG, ...(opts.group === undefined ? [] : [groupTag(opts.group)])]);
    Object.assign(record, { region: droplet.region, size: droplet.size, external: false });
    await ctx.droplets.save(record);
    return { id, tagged: true };
  } catch (err) {
    if (!(err instanceof DigitalOceanError)) throw err;
    const reason = err.code === 'DIGITALOCEAN_NOT_FOUND' ? `this DigitalOcean account has no droplet ${id}` : err.message;
    return { id, tagged: false, note: `${reason}; ${later}` };
  }
}

interface ScriptReport {
  changes: string[];
  imports: LegacyApi[];
  /** The id DigitalOcean's metadata service gave, on a DigitalOcean droplet. */
  dropletId?: number;
}

/** An API of plumber's do_deploy_api() as the check found it: its files (a gzip tar) and whether `/` forwards to it. */
interface LegacyApi {
  name: string;
  forward: boolean;
  code: Buffer;
}

/**
 * Each old API is deployed as a plumb API of the same name at the same path (`/NAME`, as
 * do_deploy_api() served it), from its files, through deploy's health gate; meanwhile the old
 * site keeps port 80 (the agent's server is not the default while it is there). Then one request
 * has the agent switch port 80 to plumb and stop the old units. All or nothing: if one does not
 * start under plumb, those imported before it are taken off plumb again (their files stay) and
 * nothing is switched, so the old site goes on serving every API and no plumb API sits unrouted.
 */
async function importLegacy(record: KnownDroplet, apis: LegacyApi[], ctx: Context): Promise<ImportedApi[]> {
  if (apis.length === 0) return [];
  const { deploy } = await import('./deploy.js');
  const imported: ImportedApi[] = [];
  for (const api of apis) {
    const dir = await mkdtemp(path.join(os.tmpdir(), `plumb-import-${api.name}-`));
    try {
      await pipeline(Readable.from(api.code), extractTar({ cwd: dir, strict: true, preserveOwner: false, filter: (_p, entry) => 'type' in entry && (entry.type === 'File' || entry.type === 'Directory') }));
      ctx.progress({ step: `importing ${api.name}: its first plumb release from /var/plumber/${api.name}` });
      const deployed = await deploy({ dir, name: api.name, path: `/${api.name}`, forward: api.forward, droplet: record.name }, ctx);
      imported.push({ name: api.name, path: deployed.path, release: deployed.release, forwarded: api.forward });
    } catch (err) {
      throw await importFailed(record, api.name, imported.map((a) => a.name), err, ctx);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  ctx.progress({ step: 'switching port 80 to plumb and stopping the old units' });
  await withAgent(ctx, record.name, ({ connection }) => connection.request<RetireLegacyResult>({ type: 'retire-legacy', names: apis.map((a) => a.name) }));
  return imported;
}

/** The import of `name` failed: the APIs imported before it leave plumb again, and the error says what still serves. */
async function importFailed(record: KnownDroplet, name: string, before: string[], err: unknown, ctx: Context): Promise<unknown> {
  const stuck: string[] = [];
  if (before.length > 0) {
    ctx.progress({ step: `taking ${before.join(', ')} off plumb again: the old site keeps serving them` });
    await withAgent(ctx, record.name, async ({ connection }) => {
      for (const api of before) await connection.request({ type: 'remove', name: api, keepFiles: true }).catch(() => stuck.push(api));
    }).catch(() => stuck.push(...before.filter((a) => !stuck.includes(a))));
  }
  const taken = before.filter((a) => !stuck.includes(a));
  const message = [
    `importing ${name} failed: ${err instanceof Error ? err.message : String(err)}`,
    `nothing was switched: plumber's old site still serves every API as before`,
    ...(taken.length > 0 ? [`${taken.join(', ')} (imported before it) left plumb again`] : []),
    ...(stuck.length > 0 ? [`${stuck.join(', ')} could not be taken off plumb (\`plumb remove NAME --keep-files\`)`] : []),
  ].join('; ');
  const hint = `make ${name} start under plumb (its files are in /var/plumber/${name}), then \`plumb uninstall ${record.name} --yes\` and adopt again with --import`;
  return err instanceof RemoteError ? new RemoteError({ code: err.code, message, hint, ...(err.step === undefined ? {} : { step: err.step }), log: err.log }) : new PlumbError(err instanceof PlumbError ? err.code : 'INTERNAL', message, hint);
}

/** ssh's options: the user's own rules, with the host key question answered as the flags say. */
function sshArgs(host: string, opts: AdoptOptions, env: Context['env']): string[] {
  const hostKeys = opts.yes ? 'accept-new' : opts.interactive ? 'ask' : 'yes';
  const config = env[SSH_CONFIG_VARIABLE];
  return [
    ...(config ? ['-F', config] : []),
    '-o', `StrictHostKeyChecking=${hostKeys}`,
    '-o', `ConnectTimeout=${ADOPT_SSH_CONNECT_TIMEOUT_S}`,
    ...(opts.interactive ? [] : ['-o', 'BatchMode=yes']),
    ...(opts.sshKey ? ['-i', opts.sshKey, '-o', 'IdentitiesOnly=yes'] : []),
    '-p', String(opts.port ?? 22),
    '-l', 'root',
    '--', host, '/bin/sh -s',
  ];
}

/** Runs the script in one SSH session; returns what --force changed, or throws the refusal or failure. */
async function runOverSsh(host: string, opts: AdoptOptions, script: string, ctx: Context): Promise<ScriptReport> {
  const child = spawn('ssh', sshArgs(host, opts, ctx.env), { stdio: ['pipe', 'pipe', 'pipe'], timeout: ADOPT_SSH_SESSION_TIMEOUT_MS });
  const lines: string[] = [];
  const log: string[] = [];
  eachLine(child.stdout, (line) => lines.push(line));
  eachLine(child.stderr, (line) => {
    log.push(line);
    if (log.length > 4 * ADOPT_LOG_LINES) log.splice(0, log.length - ADOPT_LOG_LINES);
    if (line.startsWith('Setting up ')) ctx.progress({ step: `installing plumb's base on ${host} over SSH`, detail: line.slice('Setting up '.length) });
  });
  child.stdin.on('error', () => {});
  child.stdin.end(script);
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once('error', (err) => reject(new PlumbError('SSH_UNREACHABLE', `could not run ssh: ${err.message}`, 'install the OpenSSH client (apt-get install openssh-client)')));
    child.once('close', (code) => resolve(code));
  });
  const said = lines.filter((l) => l.startsWith('plumb-adopt ')).map((l) => l.slice('plumb-adopt '.length));
  const refusals = said.filter((l) => l.startsWith('refuse ')).map((l) => l.slice('refuse '.length));
  const changes = said.filter((l) => l.startsWith('change ')).map((l) => l.slice('change '.length));
  const dropletId = Number(said.find((l) => l.startsWith('droplet '))?.slice('droplet '.length));
  if (said.includes('done') && exitCode === 0) return { changes, imports: legacyApis(said), ...(Number.isSafeInteger(dropletId) && dropletId > 0 ? { dropletId } : {}) };
  if (refusals.length > 0 && !said.includes('checked')) {
    const [first] = refusals;
    const code = first!.split(' ')[0]!;
    const messages = refusals.map((r) => r.slice(r.indexOf(' ') + 1));
    throw new PlumbError(isErrorCode(code) ? code : 'ADOPT_CLASH', `plumb did not take over ${host}: ${messages.join('; ')}; nothing was changed`, REFUSAL_HINTS[code] ?? 'adopt a Debian 13 host (on DigitalOcean: image debian-13-x64)');
  }
  if (exitCode === 255 && !said.includes('checked')) throw sshFailure(host, log.join('\n'));
  throw new PlumbError('ADOPT_FAILED', `installing plumb on ${host} failed (ssh exit ${exitCode ?? 'timeout'}); the end of its output:\n${log.slice(-ADOPT_LOG_LINES).join('\n')}`, 'fix what the output names, then adopt again with --force (what was installed stays)');
}

/** What to do about each refusal of adopt-check.sh, by its code (the OS's is the default). */
const REFUSAL_HINTS: Record<string, string> = {
  ADOPT_CLASH: 'move those aside, or add --force to take over (plumb lists what it changed)',
  ADOPT_ALREADY: 'it is managed already: `plumb uninstall` on the controller that adopted it, then adopt again',
  ADOPT_IMPORT_LIMIT: "take the extra APIs off the old way first (plumber's do_remove_api()), adopt with --import, then `plumb deploy` them",
  INVALID_INPUT: 'adopt it without --group: groups are DigitalOcean tags',
};

/** The check's `import NAME FORWARD` and `code NAME BASE64` lines, paired by name. */
function legacyApis(said: string[]): LegacyApi[] {
  const code = new Map(said.filter((l) => l.startsWith('code ')).map((l) => l.split(' ') as [string, string, string]).map(([, name, base64]) => [name, Buffer.from(base64 ?? '', 'base64')]));
  return said
    .filter((l) => l.startsWith('import '))
    .map((l) => l.split(' '))
    .map(([, name = '', forward]) => {
      const files = code.get(name);
      if (files === undefined || files.length > BUNDLE_MAX_BYTES) throw new PlumbError('ADOPT_FAILED', `the files of the old API ${name} did not arrive whole over SSH (at most ${BUNDLE_MAX_BYTES / 1024 / 1024} MiB)`, 'the old API still serves as it did; adopt again with --force --import once it is smaller');
      return { name: checkInput(ApiName, name, 'imported API name'), forward: forward === '1', code: files };
    });
}

/** Calls `take` with each whole line of the stream, and with the last one when it ends without a newline. */
function eachLine(stream: Readable, take: (line: string) => void): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (pending + chunk).split('\n');
    pending = parts.pop() ?? '';
    parts.forEach(take);
  });
  stream.on('end', () => pending && take(pending));
}

/** ssh's own words (exit 255) as a plumb error: the host key first, since it decides whom we talk to. */
function sshFailure(host: string, stderr: string): PlumbError {
  const last = stderr.trim().split('\n').at(-1) ?? '';
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr)) {
    return new PlumbError('SSH_HOST_KEY_CHANGED', `the SSH host key of ${host} is not the one in your known_hosts: plumb did not log in, nothing was changed`, 'if the host was really rebuilt, remove the old key (ssh-keygen -R HOST) and adopt again; otherwise someone may be in between');
  }
  if (/Host key verification failed|No .* host key is known/.test(stderr)) {
    return new PlumbError('SSH_HOST_KEY_UNKNOWN', `${host} is not in your known_hosts and no one could be asked to accept its key`, 'add --yes to accept the key on first contact, or ssh to it once by hand');
  }
  if (/Permission denied/.test(stderr)) return new PlumbError('SSH_AUTH_FAILED', `${host} refused the SSH login as root: ${last}`, 'give the key with --ssh-key PATH, or load it into ssh-agent');
  return new PlumbError('SSH_UNREACHABLE', `could not reach ${host} over SSH: ${last}`, 'check the address and --port, and that SSH is open to you');
}
