import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { BalancerConfig, Balancers, TargetHealth } from '../do-standin/balancers.js';
import { teardown } from '../droplets/droplet.js';
import { claimIndex, createNet, netFor, releaseIndex, type DropletNet } from '../droplets/network.js';
import { saveRecord, type DropletRecord } from '../droplets/records.js';
import { LabError } from '../errors.js';
import { run, sleep } from '../host.js';
import { dataDir } from '../paths.js';
import { checkedBackend, dropletOfServer, renderHaproxy, type HaproxyPaths } from './haproxy-config.js';

/** How long HAProxy may take to answer on its socket after a start or a reload. */
const READY_TIMEOUT_MS = 15_000;

interface Running {
  record: DropletRecord;
  net: DropletNet;
  paths: HaproxyPaths & { config: string; pidFile: string; log: string };
  child: ChildProcess;
  config: BalancerConfig;
}

/** The certificates the rules name, one PEM file each (leaf, chain, key) readable by root only. */
async function writeCertificates(dir: string, config: BalancerConfig): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [id, pem] of Object.entries(config.certificates)) await writeFile(path.join(dir, `${id}.pem`), pem, { mode: 0o600 });
}

/**
 * The lab's load balancers: one HAProxy each (Debian's package), master-worker, in a network
 * namespace of its own with a lab address (10.213.N.2), like a droplet's. A new config is a
 * graceful reload (SIGUSR2 to the master) after saving the servers' health to the state file, so
 * droplets keep their health across changes. Each balancer is recorded like a droplet, so
 * `lab down` removes it even if the lab process died.
 */
export class HaproxyBalancers implements Balancers {
  private readonly running = new Map<string, Running>();

  constructor(
    readonly instance: string,
    private readonly log: (line: string) => void = () => {},
  ) {}

  async create(id: string, config: BalancerConfig): Promise<{ ip: string }> {
    const key = `${this.instance}-lb-${id.slice(0, 8)}`;
    const index = await claimIndex(key);
    const dir = path.join(dataDir(), this.instance, `lb-${id.slice(0, 8)}`);
    const paths = {
      socket: path.join(dir, 'admin.sock'),
      stateFile: path.join(dir, 'servers.state'),
      config: path.join(dir, 'haproxy.cfg'),
      pidFile: path.join(dir, 'haproxy.pid'),
      log: path.join(dir, 'haproxy.log'),
      certDir: path.join(dir, 'certs'),
    };
    const record: DropletRecord = { key, instance: this.instance, id: 0, name: `lb-${id.slice(0, 8)}`, index, dir, machine: `lab-${key}`, pidFile: paths.pidFile };
    try {
      await saveRecord(record);
    } catch (err) {
      await releaseIndex(index);
      throw err;
    }
    const net = netFor(index);
    try {
      await mkdir(dir, { recursive: true });
      await createNet(net);
      await writeCertificates(paths.certDir, config);
      await writeFile(paths.config, renderHaproxy(config, net.address, paths));
      await run('haproxy', ['-c', '-q', '-f', paths.config]);
      const log = openSync(paths.log, 'a');
      // -W: master-worker (SIGUSR2 reloads); -db: stays in the foreground, a child of the lab.
      const child = spawn('ip', ['netns', 'exec', net.netns, 'haproxy', '-W', '-db', '-f', paths.config, '-p', paths.pidFile], { stdio: ['ignore', log, log] });
      closeSync(log);
      const balancer: Running = { record, net, paths, child, config };
      this.running.set(id, balancer);
      await this.waitReady(balancer, undefined);
      this.log(`load balancer ${id} (HAProxy) at ${net.address}`);
      return { ip: net.address };
    } catch (err) {
      this.running.delete(id);
      await teardown(record);
      throw err;
    }
  }

  async configure(id: string, config: BalancerConfig): Promise<void> {
    const balancer = this.get(id);
    const before = await this.workerPid(balancer);
    await writeFile(balancer.paths.stateFile, await this.ask(balancer, 'show servers state'));
    await writeCertificates(balancer.paths.certDir, config);
    await writeFile(balancer.paths.config, renderHaproxy(config, balancer.net.address, balancer.paths));
    await run('haproxy', ['-c', '-q', '-f', balancer.paths.config]);
    balancer.child.kill('SIGUSR2');
    await this.waitReady(balancer, before);
    balancer.config = config;
  }

  async health(id: string): Promise<Map<number, TargetHealth>> {
    const balancer = this.get(id);
    const backend = checkedBackend(balancer.config);
    const csv = await this.ask(balancer, 'show stat');
    const [header, ...rows] = csv.replace(/^# /, '').trim().split('\n').map((l) => l.split(','));
    const col = (name: string) => header?.indexOf(name) ?? -1;
    const health = new Map<number, TargetHealth>();
    for (const row of rows) {
      const droplet = dropletOfServer(row[col('svname')] ?? '');
      if (row[col('pxname')] !== backend || droplet === undefined) continue;
      // "UP", "UP 1/3" (failing, not yet out) and "no check" serve; "DOWN", "DOWN 1/2" (passing, not yet back) and MAINT do not.
      const status = row[col('status')] ?? '';
      health.set(droplet, status.startsWith('UP') ? 'healthy' : 'unhealthy');
    }
    return health;
  }

  async destroy(id: string): Promise<void> {
    const balancer = this.running.get(id);
    if (balancer === undefined) return;
    this.running.delete(id);
    await teardown(balancer.record);
  }

  async destroyAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((id) => this.destroy(id)));
  }

  private get(id: string): Running {
    const balancer = this.running.get(id);
    if (balancer === undefined) throw new LabError(`no lab load balancer ${id}`);
    return balancer;
  }

  /** Ready = a worker other than `before` answers on the socket (after a reload the socket is the new worker's). */
  private async waitReady(balancer: Running, before: string | undefined): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (balancer.child.exitCode !== null) throw new LabError(`HAProxy for ${balancer.record.name} exited ${balancer.child.exitCode} (see ${balancer.paths.log})`);
      const pid = await this.workerPid(balancer).catch(() => undefined);
      if (pid !== undefined && pid !== before) return;
      await sleep(100);
    }
    throw new LabError(`HAProxy for ${balancer.record.name} did not come up (see ${balancer.paths.log})`);
  }

  private async workerPid(balancer: Running): Promise<string | undefined> {
    const info = await this.ask(balancer, 'show info');
    return /^Pid: (\d+)$/m.exec(info)?.[1];
  }

  /** One command on HAProxy's admin socket; its whole answer. */
  private ask(balancer: Running, command: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(balancer.paths.socket);
      let answer = '';
      socket.setTimeout(5000, () => socket.destroy(new LabError(`HAProxy's socket did not answer "${command}"`)));
      socket.on('connect', () => socket.end(`${command}\n`));
      socket.on('data', (chunk) => (answer += chunk.toString()));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
    });
  }
}

