import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LabError } from '../errors.js';
import { alive, run, sleep, tryRun } from '../host.js';
import { dropletArchiveDir, harvestArchive, seedArchive } from './apt-cache.js';
import { createLimits, removeLimits, type Limits } from './cgroup.js';
import { createNet, netFor, releaseIndex, removeNet, type DropletNet } from './network.js';
import { containerInit, findNspawn } from './processes.js';
import { removeRecord, type DropletRecord } from './records.js';

/** How long a droplet may take from nspawn start to systemd answering. */
const BOOT_TIMEOUT_MS = 120_000;
/** How long a graceful shutdown may take before the lab pulls the plug. */
const SHUTDOWN_TIMEOUT_MS = 60_000;
/** systemd-nspawn's exit status when the container asked to reboot (systemd-nspawn(1)). */
const NSPAWN_REBOOT_STATUS = 133;
const SEED_DIR = 'var/lib/cloud/seed/nocloud';
const ROOT_LOGIN_CFG = 'etc/cloud/cloud.cfg.d/91-plumb-lab-root.cfg';

export type DropletState = 'booting' | 'running' | 'stopped';

export interface DropletSpec {
  userData: string;
  /** OpenSSH public keys cloud-init puts in root's authorized_keys (NoCloud `public-keys`, as DigitalOcean's metadata). */
  publicKeys?: string[];
  limits: Limits;
  rootfs: string;
  /** Written into the droplet's disk before it first boots (path inside the droplet -> content): the lab's own setup. */
  files?: Record<string, string>;
  /** No route beyond the lab's network (NspawnMachines.cutOffNext). */
  offline?: boolean;
  /** The lab's metadata server on the host, which this droplet's 169.254.169.254:80 reaches. */
  metadataPort?: number;
}

interface Run {
  child: ChildProcess;
  exited: Promise<number | null>;
  booted: Promise<void>;
}

/**
 * One lab droplet: an overlay of the cached root filesystem booted by systemd-nspawn in its own
 * network namespace, with cloud-init fed from a NoCloud seed. It reboots as a real one does
 * (nspawn exits 133 and is started again with the same disk and address).
 */
export class NspawnDroplet {
  readonly net: DropletNet;
  state: DropletState = 'booting';
  bootedOnce = false;
  private current?: Run;
  private stopping = false;

  constructor(
    readonly record: DropletRecord,
    private readonly spec: DropletSpec,
  ) {
    this.net = netFor(record.index);
  }

  get rootDir() {
    return path.join(this.record.dir, 'root');
  }

  get consoleLog() {
    return path.join(this.record.dir, 'console.log');
  }

  /** Makes the disk, seed, network and limits, then starts booting (does not wait for it). */
  async create(): Promise<void> {
    const { dir } = this.record;
    for (const sub of ['upper', 'work', 'root']) await mkdir(path.join(dir, sub), { recursive: true });
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${this.spec.rootfs},upperdir=${dir}/upper,workdir=${dir}/work`, this.rootDir]);
    await this.writeSeed();
    if (!this.spec.offline) await seedArchive(dir);
    await createNet(this.net, this.spec.offline ?? false, this.spec.metadataPort);
    this.start(await createLimits(this.record.machine, this.spec.limits));
  }

  private async writeSeed(): Promise<void> {
    const seed = path.join(this.rootDir, SEED_DIR);
    await mkdir(seed, { recursive: true });
    const keys = (this.spec.publicKeys ?? []).map((k) => `  - ${JSON.stringify(k)}\n`).join('');
    await writeFile(path.join(seed, 'meta-data'), `instance-id: ${this.record.id}\nlocal-hostname: ${this.record.name}\n${keys ? `public-keys:\n${keys}` : ''}`);
    // DigitalOcean's images let root in with the droplet's keys; Debian's own cloud.cfg would not.
    await writeFile(path.join(this.rootDir, ROOT_LOGIN_CFG), 'disable_root: false\n');
    await writeFile(path.join(seed, 'user-data'), this.spec.userData);
    await writeFile(path.join(seed, 'vendor-data'), '');
    await writeFile(path.join(this.rootDir, 'etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
    await rm(path.join(this.rootDir, 'etc/resolv.conf'), { force: true });
    await writeFile(path.join(this.rootDir, 'etc/resolv.conf'), await hostNameservers());
    for (const [file, content] of Object.entries(this.spec.files ?? {})) {
      await mkdir(path.dirname(path.join(this.rootDir, file)), { recursive: true });
      await writeFile(path.join(this.rootDir, file), content, { mode: 0o644 });
    }
  }

  private cgroupProcs: string[] = [];

  private start(cgroupProcs = this.cgroupProcs): void {
    this.cgroupProcs = cgroupProcs;
    this.state = 'booting';
    const log = openSync(this.consoleLog, 'a');
    // The shell joins the cgroups and then execs nspawn, so every process of the droplet is inside them.
    const joinThenExec = 'IFS=:; for f in $PLUMB_LAB_CGROUP_PROCS; do echo $$ > "$f"; done; exec "$@"';
    const child = spawn('/bin/sh', ['-c', joinThenExec, 'sh', 'systemd-nspawn', ...this.nspawnArgs()], {
      env: { ...process.env, PLUMB_LAB_CGROUP_PROCS: cgroupProcs.join(':') },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const booted = this.waitBooted(child, exited);
    const thisRun: Run = { child, exited, booted };
    this.current = thisRun;
    booted.then(
      () => {
        if (this.current === thisRun) {
          this.state = 'running';
          this.bootedOnce = true;
        }
      },
      () => {},
    );
    void exited.then((code) => {
      if (this.current !== thisRun) return;
      if (code === NSPAWN_REBOOT_STATUS && !this.stopping) this.start();
      else this.state = 'stopped';
    });
  }

  private nspawnArgs(): string[] {
    return [
      `--directory=${this.rootDir}`,
      `--machine=${this.record.machine}`,
      `--hostname=${this.record.name}`,
      '--boot',
      `--network-namespace-path=/run/netns/${this.net.netns}`,
      '--register=no',
      '--keep-unit',
      '--capability=CAP_NET_ADMIN,CAP_NET_RAW',
      '--resolv-conf=off',
      '--link-journal=no',
      // A droplet cut off from the mirror must not find the packages in the lab's shared cache either.
      ...(this.spec.offline ? [] : [`--bind=${dropletArchiveDir(this.record.dir)}:/var/cache/apt/archives`]),
    ];
  }

  /** Booted = systemd inside answers and is starting or running its units. */
  private async waitBooted(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
    let gone = false;
    void exited.then(() => (gone = true));
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    while (!gone && Date.now() < deadline) {
      const init = child.pid === undefined ? undefined : await containerInit(child.pid);
      if (init !== undefined) {
        const state = await execa('nsenter', [...nsenterArgs(init), 'systemctl', 'is-system-running'], { reject: false, timeout: 5000 });
        if (['starting', 'running', 'degraded'].includes(state.stdout.trim())) return;
      }
      await sleep(200);
    }
    throw new LabError(`droplet ${this.record.name} did not boot (see ${this.consoleLog})`);
  }

  async whenBooted(): Promise<void> {
    await this.current?.booted;
  }

  /** Runs a command inside the droplet as root, with an argument array (never a shell string). */
  async exec(argv: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    return run('nsenter', [...nsenterArgs(await this.init()), ...argv], opts);
  }

  async init(): Promise<number> {
    const pid = this.current?.child.pid;
    const init = pid === undefined || this.state === 'stopped' ? undefined : await containerInit(pid);
    if (init === undefined) throw new LabError(`droplet ${this.record.name} is not running`);
    return init;
  }

  async reboot(): Promise<void> {
    const before = this.requireRunning();
    await tryRun('nsenter', [...nsenterArgs(await this.init()), 'systemctl', 'reboot']);
    await withTimeout(before.exited, SHUTDOWN_TIMEOUT_MS, `droplet ${this.record.name} did not reboot`);
    while (this.current === before && this.state !== 'stopped') await sleep(50);
    if (this.current === before) throw new LabError(`droplet ${this.record.name} stopped instead of rebooting (see ${this.consoleLog})`);
    await this.current?.booted;
  }

  async shutdown(): Promise<void> {
    const before = this.requireRunning();
    this.stopping = true;
    await tryRun('nsenter', [...nsenterArgs(await this.init()), 'systemctl', 'poweroff']);
    try {
      await withTimeout(before.exited, SHUTDOWN_TIMEOUT_MS, 'shutdown timed out');
    } catch {
      await this.powerOff();
    }
  }

  /** The plug: kills the container's init (and with it its whole PID namespace). */
  async powerOff(): Promise<void> {
    const current = this.current;
    if (!current || this.state === 'stopped') return;
    this.stopping = true;
    const pid = current.child.pid;
    const init = pid === undefined ? undefined : await containerInit(pid);
    if (init !== undefined) process.kill(init, 'SIGKILL');
    else current.child.kill('SIGKILL');
    await withTimeout(current.exited, 30_000, `droplet ${this.record.name} did not stop`).catch(() => current.child.kill('SIGKILL'));
    this.state = 'stopped';
  }

  async powerOn(): Promise<void> {
    if (this.state !== 'stopped') return this.whenBooted();
    this.stopping = false;
    this.start();
    await this.current?.booted;
  }

  async destroy(): Promise<void> {
    await this.powerOff();
    await teardown(this.record);
  }

  private requireRunning(): Run {
    if (!this.current || this.state === 'stopped') throw new LabError(`droplet ${this.record.name} is off`);
    return this.current;
  }
}

export function nsenterArgs(init: number): string[] {
  return ['-t', String(init), '-m', '-u', '-i', '-n', '-p', '--'];
}

/**
 * Removes everything the lab made for a droplet; safe to call again and on a half-made droplet
 * whose process died (this is what `lab down` runs for each record it finds).
 */
export async function teardown(record: DropletRecord): Promise<void> {
  for (const nspawn of await findNspawn(record.machine)) {
    const init = await containerInit(nspawn.pid);
    if (init !== undefined) process.kill(init, 'SIGKILL');
    for (let i = 0; i < 100 && alive(nspawn.pid); i++) await sleep(100);
    if (alive(nspawn.pid)) process.kill(nspawn.pid, 'SIGKILL');
  }
  if (record.pidFile !== undefined) await killPidFile(record.pidFile);
  const root = path.join(record.dir, 'root');
  if (await isMountPoint(root)) {
    if (!(await tryRun('umount', [root]))) await run('umount', ['--lazy', root]);
  }
  // What it downloaded serves the next droplets; a failure here must not stop the teardown.
  await harvestArchive(record.dir).catch(() => {});
  await rm(record.dir, { recursive: true, force: true });
  await removeNet(netFor(record.index));
  await removeLimits(record.machine);
  await releaseIndex(record.index);
  await removeRecord(record.key);
}

async function killPidFile(file: string): Promise<void> {
  const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

async function isMountPoint(dir: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((line) => line.split(' ')[1] === dir);
}

/** The host's resolvers that a droplet can reach through NAT (loopback ones cannot be). */
async function hostNameservers(): Promise<string> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const servers = text.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[0] === 'nameserver' && f[1] && !f[1].startsWith('127.') && f[1] !== '::1').map((f) => f[1]);
  if (servers.length === 0) throw new LabError('the host has no nameserver a droplet can reach (only loopback ones in /etc/resolv.conf)', 'add a non-loopback nameserver to /etc/resolv.conf');
  return servers.map((s) => `nameserver ${s}\n`).join('');
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new LabError(message)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
