/**
 * The lab's ACME server: Debian's `pebble` with `pebble-challtestsrv` as its DNS. Droplets reach
 * pebble at the lab's host address; pebble's validation authority resolves test domains through
 * challtestsrv (see `resolve`) and connects to the droplet on port 80 for HTTP-01.
 *
 * Pebble's HTTPS listener gets a certificate from a lab CA made here (not pebble's published
 * minica, whose key is public): that CA is what certbot on a droplet trusts through
 * REQUESTS_CA_BUNDLE. Certificates pebble issues chain to a different root, regenerated on every
 * pebble start (`issuingRootPem`).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { Resolver } from 'node:dns/promises';
import { createServer, isIPv4 } from 'node:net';
import { createSocket } from 'node:dgram';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';

export interface AcmeServerOptions {
  /** Certificates, pebble's config, logs and the pid file go here (created with mode 0700). */
  stateDir: string;
  /** IPv4 address pebble's ACME endpoint listens on; must already be on a host interface. */
  bindAddress?: string;
  acmePort?: number;
  /** Pebble's management API (roots, keys); listens on 127.0.0.1 only. */
  managementPort?: number;
  /** challtestsrv's DNS (UDP and TCP) on 127.0.0.1, which pebble uses as its resolver. */
  dnsPort?: number;
  /** challtestsrv's management API on 127.0.0.1 (add-a, clear-a). */
  dnsManagementPort?: number;
}

export interface AcmeServer {
  /** `https://BIND:ACMEPORT/dir`, the `--server` for certbot. */
  directoryUrl: string;
  /** PEM of the lab CA that signed pebble's listener certificate: what a droplet must trust. */
  listenerCaPem: string;
  /** The same CA as a file on the host (`STATEDIR/listener-ca.pem`). */
  listenerCaPath: string;
  /** Pebble's current issuing root (management `/roots/0`); changes on every start. */
  issuingRootPem(): Promise<string>;
  /** `127.0.0.1:PORT` of the DNS server pebble resolves test domains with (challtestsrv). */
  dnsServer: string;
  /** challtestsrv's management API (`POST /add-a`), for `lab resolve` from another process. */
  dnsManagementUrl: string;
  /** Make DOMAIN's A record answer IPV4 for pebble's validation authority. */
  resolve(domain: string, ipv4: string): Promise<void>;
  /** Drop DOMAIN's A record (it then answers challtestsrv's default, 127.0.0.1). */
  unresolve(domain: string): Promise<void>;
  /** Stops both processes and waits for them to exit. Idempotent. */
  stop(): Promise<void>;
}

/** Where a lab droplet keeps the CA of pebble's listener. */
export const DROPLET_ACME_CA = '/usr/local/share/plumb-lab/acme-ca.pem';

/**
 * What a lab droplet needs on its disk to trust pebble: the CA, and REQUESTS_CA_BUNDLE for the
 * two ways certbot runs there (started by plumb-agent, whose environment it inherits, and by
 * certbot.timer for renewals). Lab only: a real droplet talks to Let's Encrypt with the system's CAs.
 */
export function dropletTrustFiles(listenerCaPem: string): Record<string, string> {
  const dropIn = `# Written by the plumb lab before first boot: certbot trusts the lab's ACME server (pebble).\n[Service]\nEnvironment=REQUESTS_CA_BUNDLE=${DROPLET_ACME_CA}\n`;
  return {
    [DROPLET_ACME_CA]: listenerCaPem,
    '/etc/systemd/system/plumb-agent.service.d/lab-acme.conf': dropIn,
    '/etc/systemd/system/certbot.service.d/lab-acme.conf': dropIn,
  };
}

export type AcmeLabErrorCode = 'ACME_BAD_OPTION' | 'ACME_OPENSSL' | 'ACME_NOT_READY' | 'ACME_REQUEST';

export class AcmeLabError extends Error {
  override name = 'AcmeLabError';
  constructor(readonly code: AcmeLabErrorCode, message: string, cause?: Error) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

export const ACME_DEFAULTS = {
  bindAddress: '10.213.0.1',
  acmePort: 14000,
  managementPort: 15000,
  dnsPort: 8053,
  dnsManagementPort: 8055,
} as const;

const READY_TIMEOUT_MS = 10_000;
const READY_POLL_MS = 100;
const STOP_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 2_000;
const RESPONSE_MAX_BYTES = 1024 * 1024;
const LOG_TAIL_BYTES = 2048;
const PIDS_FILE = 'pids';
const PROGRAMS = new Set(['pebble', 'pebble-challtestsrv']);
/** challtestsrv answers every A query (with its default address), so any name shows DNS is up. */
const READY_PROBE_NAME = 'ready.acme.lab';

interface Recorded {
  pid: number;
  argv: string[];
}

interface Child extends Recorded {
  process: ResultPromise;
  logPath: string;
  exited: boolean;
}

export async function startAcmeServer(opts: AcmeServerOptions): Promise<AcmeServer> {
  const o = {
    bindAddress: opts.bindAddress ?? ACME_DEFAULTS.bindAddress,
    acmePort: opts.acmePort ?? ACME_DEFAULTS.acmePort,
    managementPort: opts.managementPort ?? ACME_DEFAULTS.managementPort,
    dnsPort: opts.dnsPort ?? ACME_DEFAULTS.dnsPort,
    dnsManagementPort: opts.dnsManagementPort ?? ACME_DEFAULTS.dnsManagementPort,
  };
  if (!isIPv4(o.bindAddress)) {
    throw new AcmeLabError('ACME_BAD_OPTION', `acme: bindAddress must be an IPv4 address, got "${o.bindAddress}"`);
  }
  for (const key of ['acmePort', 'managementPort', 'dnsPort', 'dnsManagementPort'] as const) {
    const port = o[key];
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new AcmeLabError('ACME_BAD_OPTION', `acme: ${key} must be a port number, got ${port}`);
    }
  }
  const dir = opts.stateDir;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  // A previous run in this directory that crashed may still hold the ports.
  await sweepAcme(dir);

  const listenerCaPath = join(dir, 'listener-ca.pem');
  await makeListenerCertificate(dir, o.bindAddress);
  const listenerCaPem = await readFile(listenerCaPath, 'utf8');

  const configPath = join(dir, 'pebble-config.json');
  await writeFile(configPath, JSON.stringify({
    pebble: {
      listenAddress: `${o.bindAddress}:${o.acmePort}`,
      managementListenAddress: `127.0.0.1:${o.managementPort}`,
      certificate: join(dir, 'listener.pem'),
      privateKey: join(dir, 'listener.key'),
      httpPort: 80,
      tlsPort: 443,
      ocspResponderURL: '',
      externalAccountBindingRequired: false,
    },
  }, null, 2) + '\n');

  const dnsServer = `127.0.0.1:${o.dnsPort}`;
  const dnsManagementUrl = `http://127.0.0.1:${o.dnsManagementPort}`;
  const directoryUrl = `https://${o.bindAddress}:${o.acmePort}/dir`;
  const rootUrl = `https://127.0.0.1:${o.managementPort}/roots/0`;

  const children: Child[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopChildren(dir, children));
  try {
    children.push(await spawnLogged(dir, 'pebble-challtestsrv', [
      '-http01', '', '-https01', '', '-tlsalpn01', '',
      '-dns01', dnsServer,
      '-management', `127.0.0.1:${o.dnsManagementPort}`,
      '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '',
    ], {}));
    await writePids(dir, children);
    children.push(await spawnLogged(dir, 'pebble', ['-config', configPath, '-dnsserver', dnsServer], {
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
      PEBBLE_AUTHZREUSE: '100',
      // Validation requests go straight to the droplet, never through a proxy set for this host.
      NO_PROXY: '*',
      no_proxy: '*',
    }));
    await writePids(dir, children);

    const [challtestsrv, pebble] = children as [Child, Child];
    await waitReady(challtestsrv, async () => {
      await request(dnsManagementUrl);
      const resolver = new Resolver({ timeout: REQUEST_TIMEOUT_MS, tries: 1 });
      resolver.setServers([dnsServer]);
      await resolver.resolve4(READY_PROBE_NAME);
    });
    await waitReady(pebble, async () => {
      await request(directoryUrl, { ca: listenerCaPem, expect: 200 });
      await request(rootUrl, { ca: listenerCaPem, expect: 200 });
    });
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    directoryUrl,
    dnsServer,
    dnsManagementUrl,
    listenerCaPem,
    listenerCaPath,
    async issuingRootPem() {
      return (await request(rootUrl, { ca: listenerCaPem, expect: 200 })).body;
    },
    async resolve(domain, ipv4) {
      checkDomain(domain);
      if (!isIPv4(ipv4)) throw new AcmeLabError('ACME_BAD_OPTION', `acme: resolve needs an IPv4 address, got "${ipv4}"`);
      await request(`${dnsManagementUrl}/add-a`, { method: 'POST', body: { host: domain, addresses: [ipv4] }, expect: 200 });
    },
    async unresolve(domain) {
      checkDomain(domain);
      await request(`${dnsManagementUrl}/clear-a`, { method: 'POST', body: { host: domain }, expect: 200 });
    },
    stop,
  };
}

/**
 * Stops the pebble and challtestsrv processes a crashed run left behind in STATEDIR (listed in
 * its pid file). A pid is signalled only while its command line is still exactly the one
 * recorded, so a reused pid or another lab's pebble is never touched. Idempotent; resolves with
 * the number of processes it stopped.
 */
/** A port free for TCP and UDP on 127.0.0.1 now (challtestsrv's DNS takes both); the caller binds it right after. */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    await new Promise((resolve) => server.close(resolve));
    if (address === null || typeof address === 'string') throw new Error('no TCP port');
    const udp = createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(address.port, '127.0.0.1', () => resolve(true));
    });
    udp.close();
    if (ok) return address.port;
  }
}

/**
 * startAcmeServer on four ports free a moment ago. Between the look and pebble's bind another
 * process (a parallel test file's lab) may take one: pebble then exits "address already in use",
 * and the start is tried again on new ports, in the same directory (its sweep ends the first try's
 * leftovers).
 */
export async function startAcmeServerOnFreePorts(opts: Omit<AcmeServerOptions, 'acmePort' | 'managementPort' | 'dnsPort' | 'dnsManagementPort'>, tries = 3): Promise<{ server: AcmeServer; options: AcmeServerOptions }> {
  for (let attempt = 1; ; attempt++) {
    const options = { ...opts, acmePort: await freePort(), managementPort: await freePort(), dnsPort: await freePort(), dnsManagementPort: await freePort() };
    try {
      return { server: await startAcmeServer(options), options };
    } catch (err) {
      if (attempt >= tries || !(err instanceof AcmeLabError && /address already in use/.test(err.message))) throw err;
    }
  }
}

export async function sweepAcme(stateDir: string): Promise<number> {
  const recorded = await readPids(stateDir);
  const alive: Recorded[] = [];
  for (const r of recorded) {
    if (PROGRAMS.has(basename(r.argv[0] ?? '')) && (await isRunning(r))) alive.push(r);
  }
  for (const r of alive) signal(r.pid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  let left = alive;
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(READY_POLL_MS);
    left = await filterRunning(left);
  }
  for (const r of left) signal(r.pid, 'SIGKILL');
  while (left.length > 0) {
    await sleep(READY_POLL_MS);
    left = await filterRunning(left);
  }
  await rm(join(stateDir, PIDS_FILE), { force: true });
  return alive.length;
}

async function makeListenerCertificate(dir: string, bindAddress: string): Promise<void> {
  const cnf = join(dir, 'openssl.cnf');
  // Extensions meet OpenSSL's X509_STRICT checks, which Python 3.13 (certbot on Debian 13) applies.
  await writeFile(cnf, [
    '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]',
    '[lab_ca]',
    'basicConstraints = critical,CA:TRUE,pathlen:0',
    'keyUsage = critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier = hash',
    '[listener]',
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = IP:${bindAddress},IP:127.0.0.1,DNS:localhost,DNS:acme.lab`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid:always',
    '',
  ].join('\n'));
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc'];
  await openssl(['req', '-x509', '-config', cnf, '-extensions', 'lab_ca', ...ecKey,
    '-keyout', join(dir, 'listener-ca.key'), '-out', join(dir, 'listener-ca.pem'),
    '-days', '3650', '-subj', '/CN=plumb lab ACME listener CA']);
  await openssl(['req', '-new', '-config', cnf, ...ecKey,
    '-keyout', join(dir, 'listener.key'), '-out', join(dir, 'listener.csr'), '-subj', '/CN=acme.lab']);
  await openssl(['x509', '-req', '-in', join(dir, 'listener.csr'),
    '-CA', join(dir, 'listener-ca.pem'), '-CAkey', join(dir, 'listener-ca.key'),
    '-extfile', cnf, '-extensions', 'listener', '-days', '825', '-out', join(dir, 'listener.pem')]);
}

async function openssl(args: string[]): Promise<void> {
  const r = await execa('openssl', args, { reject: false, stdin: 'ignore' });
  if (r.failed) {
    throw new AcmeLabError('ACME_OPENSSL', `acme: openssl ${args[0]} failed: ${String(r.stderr).trim() || r.shortMessage}`);
  }
}

/**
 * Starts FILE with its output appended to STATEDIR/FILE.log. `setpriv --pdeathsig` makes the
 * kernel send SIGTERM when this process dies, even by SIGKILL; execa's cleanup covers normal
 * exits and signals, and the pid file covers anything else (sweepAcme).
 */
async function spawnLogged(dir: string, file: string, args: string[], env: Record<string, string>): Promise<Child> {
  const logPath = join(dir, `${file}.log`);
  // A file stream with an fd is handed to the child as is: it writes the log without this process.
  const log = createWriteStream(logPath, { flags: 'w', mode: 0o600 });
  await once(log, 'open');
  try {
    const subprocess = execa('setpriv', ['--pdeathsig', 'SIGTERM', '--', file, ...args], {
      env,
      stdin: 'ignore',
      stdout: log,
      stderr: log,
      reject: false,
      forceKillAfterDelay: STOP_TIMEOUT_MS,
    });
    if (subprocess.pid === undefined) {
      const r = await subprocess;
      throw new AcmeLabError('ACME_NOT_READY', `acme: could not start ${file}: ${r.shortMessage}`);
    }
    const child: Child = { pid: subprocess.pid, argv: [file, ...args], process: subprocess, logPath, exited: false };
    void subprocess.then(() => { child.exited = true; });
    return child;
  } finally {
    log.close();
  }
}

async function waitReady(child: Child, probe: () => Promise<void>): Promise<void> {
  const name = child.argv[0];
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last: unknown;
  while (Date.now() < deadline) {
    if (child.exited) {
      throw new AcmeLabError('ACME_NOT_READY',
        `acme: ${name} exited during start-up; end of ${child.logPath}:\n${await logTail(child.logPath)}`);
    }
    try {
      await probe();
      return;
    } catch (err) {
      last = err;
    }
    await sleep(READY_POLL_MS);
  }
  const why = last instanceof Error ? last.message : String(last);
  throw new AcmeLabError('ACME_NOT_READY',
    `acme: ${name} did not answer within ${READY_TIMEOUT_MS / 1000} s (${why}); end of ${child.logPath}:\n${await logTail(child.logPath)}`);
}

async function stopChildren(dir: string, children: Child[]): Promise<void> {
  for (const c of children) c.process.kill('SIGTERM');
  await Promise.all(children.map((c) => c.process));
  await rm(join(dir, PIDS_FILE), { force: true });
}

async function logTail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.slice(-LOG_TAIL_BYTES).trimEnd() || '(empty)';
}

async function writePids(dir: string, children: Recorded[]): Promise<void> {
  const path = join(dir, PIDS_FILE);
  const body = children.map(({ pid, argv }) => JSON.stringify({ pid, argv }) + '\n').join('');
  await writeFile(`${path}.tmp`, body, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

async function readPids(dir: string): Promise<Recorded[]> {
  let text: string;
  try {
    text = await readFile(join(dir, PIDS_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: Recorded[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v: unknown = JSON.parse(line);
      if (isRecorded(v)) out.push(v);
    } catch {
      // A torn line from a crash mid-write names no process we can trust.
    }
  }
  return out;
}

function isRecorded(v: unknown): v is Recorded {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<Recorded>;
  return Number.isInteger(r.pid) && (r.pid ?? 0) > 1 && Array.isArray(r.argv) && r.argv.every((a) => typeof a === 'string');
}

/** True while PID runs exactly ARGV (a zombie's cmdline is empty, so it counts as gone). */
async function isRunning({ pid, argv }: Recorded): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline === argv.map((a) => a + '\0').join('');
}

async function filterRunning(list: Recorded[]): Promise<Recorded[]> {
  const running = await Promise.all(list.map(isRunning));
  return list.filter((_, i) => running[i]);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

function checkDomain(domain: string): void {
  if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(domain)) {
    throw new AcmeLabError('ACME_BAD_OPTION', `acme: "${domain}" is not a domain name`);
  }
}

interface RequestOptions {
  method?: 'GET' | 'POST';
  body?: unknown;
  /** Trust anchor for https URLs. */
  ca?: string;
  /** Status the caller needs; any other is an error. Without it, any answer will do. */
  expect?: number;
}

/** One HTTP(S) exchange with a timeout and a size cap; resolves with the status and body. */
function request(url: string, opts: RequestOptions = {}): Promise<{ status: number; body: string }> {
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const fail = (message: string, cause?: Error) =>
      reject(new AcmeLabError('ACME_REQUEST', `acme: ${opts.method ?? 'GET'} ${url}: ${message}`, cause));
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.request(url, {
      method: opts.method ?? 'GET',
      agent: false,
      timeout: REQUEST_TIMEOUT_MS,
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > RESPONSE_MAX_BYTES) {
          res.destroy();
          fail(`response over ${RESPONSE_MAX_BYTES} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', (err) => fail(err.message, err));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const body = Buffer.concat(chunks).toString('utf8');
        if (opts.expect !== undefined && status !== opts.expect) {
          fail(`status ${status} (wanted ${opts.expect}): ${body.slice(0, 200).trim()}`);
        } else {
          resolve({ status, body });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (err) => fail(err.message, err));
    req.end(payload);
  });
}
