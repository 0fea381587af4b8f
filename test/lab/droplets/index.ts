import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { LabError } from '../errors.js';
import { aptArchiveDir, dataDir } from '../paths.js';
import type { MachineInfo, Machines, MachineSpec } from '../do-standin/machines.js';
import { NspawnDroplet, teardown } from './droplet.js';
import { claimIndex, releaseIndex } from './network.js';
import { ensureRootfs } from './rootfs.js';
import { saveRecord, type DropletRecord } from './records.js';

/** The lab's droplets: systemd-nspawn containers, one per DigitalOcean droplet of the stand-in. */
export class NspawnMachines implements Machines {
  private readonly droplets = new Map<number, NspawnDroplet>();
  private offlineLeft = 0;
  /** Where droplets created from now on find DigitalOcean's metadata service (the lab's server). */
  metadataPort: number | undefined;

  constructor(
    /** Names this lab's droplets on the host, so `lab down --instance` removes only them. */
    readonly instance: string,
    private readonly log: (line: string) => void = () => {},
    /** Files every droplet of this lab gets on its disk before it boots (e.g. trust in the lab's ACME server). */
    private readonly files: Record<string, string> = {},
  ) {}

  /**
   * A fault a real droplet can meet: the next `count` droplets reach nothing beyond the lab (no
   * Debian mirror, no DNS) and get no share of the lab's apt cache, so cloud-init cannot install
   * packages; the controller still reaches them.
   */
  cutOffNext(count = 1): void {
    this.offlineLeft = count;
  }

  async create(spec: MachineSpec): Promise<void> {
    const offline = this.offlineLeft > 0;
    if (offline) this.offlineLeft--;
    const rootfs = await ensureRootfs(this.log);
    await mkdir(aptArchiveDir(), { recursive: true });
    const key = `${this.instance}-${spec.id}`;
    const index = await claimIndex(key);
    const record: DropletRecord = {
      key,
      instance: this.instance,
      id: spec.id,
      name: spec.name,
      index,
      dir: path.join(dataDir(), this.instance, String(spec.id)),
      machine: `lab-${key}`,
    };
    try {
      await saveRecord(record);
    } catch (err) {
      await releaseIndex(index);
      throw err;
    }
    const droplet = new NspawnDroplet(record, {
      userData: spec.userData,
      publicKeys: spec.publicKeys,
      rootfs,
      files: this.files,
      offline,
      ...(this.metadataPort === undefined ? {} : { metadataPort: this.metadataPort }),
      limits: { memoryBytes: spec.memoryMiB * 1024 * 1024, vcpus: spec.vcpus },
    });
    try {
      await droplet.create();
    } catch (err) {
      await teardown(record);
      throw err;
    }
    this.droplets.set(spec.id, droplet);
    this.log(`droplet ${spec.name} (${spec.id}) booting at ${droplet.net.address}`);
  }

  inspect(id: number): MachineInfo | undefined {
    const droplet = this.droplets.get(id);
    if (!droplet) return undefined;
    const { address, netmask, gateway } = droplet.net;
    return { state: droplet.state, booted: droplet.bootedOnce, ...(droplet.bootedOnce ? { ipv4: { address, netmask, gateway } } : {}) };
  }

  /** The droplet itself, for tests and the lab CLI to run commands inside it. */
  get(id: number): NspawnDroplet {
    const droplet = this.droplets.get(id);
    if (!droplet) throw new LabError(`no lab droplet with id ${id}`);
    return droplet;
  }

  list(): NspawnDroplet[] {
    return [...this.droplets.values()];
  }

  reboot(id: number) {
    return this.get(id).reboot();
  }

  shutdown(id: number) {
    return this.get(id).shutdown();
  }

  powerOff(id: number) {
    return this.get(id).powerOff();
  }

  powerOn(id: number) {
    return this.get(id).powerOn();
  }

  async destroy(id: number): Promise<void> {
    await this.get(id).destroy();
    this.droplets.delete(id);
  }

  async destroyAll(): Promise<void> {
    await Promise.all([...this.droplets.keys()].map((id) => this.destroy(id)));
  }
}
