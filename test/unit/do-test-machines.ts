import type { MachineInfo, MachineSpec, MachineState, Machines } from '../lab/do-standin/machines.js';

type Op = 'create' | 'reboot' | 'shutdown' | 'powerOff' | 'powerOn' | 'destroy';

interface Held {
  op: Op;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * A test double of the lab's machines, for tests of the DigitalOcean stand-in's API shapes only
 * (the real nspawn machines have their own tests). It records every call, boots a machine only
 * when the test says so, and can hold operations open or make them fail on demand.
 */
export class ScriptedMachines implements Machines {
  readonly calls: { op: Op; id: number }[] = [];
  readonly specs = new Map<number, MachineSpec>();
  /** When set, the next create rejects with it. */
  failNextCreate: Error | undefined;
  /** When true, operations other than create wait for `settle`; otherwise they finish at once. */
  holdOperations = false;
  private readonly infos = new Map<number, MachineInfo>();
  private readonly held = new Map<number, Held[]>();
  private addresses = 0;

  async create(spec: MachineSpec): Promise<void> {
    this.calls.push({ op: 'create', id: spec.id });
    const failure = this.failNextCreate;
    this.failNextCreate = undefined;
    if (failure !== undefined) throw failure;
    this.specs.set(spec.id, spec);
    this.infos.set(spec.id, { state: 'booting', booted: false });
  }

  inspect(id: number): MachineInfo | undefined {
    const info = this.infos.get(id);
    return info === undefined ? undefined : { ...info };
  }

  /** The machine has booted and has an address: DigitalOcean would now say `active`. */
  boot(id: number): void {
    const info = this.infos.get(id);
    if (info === undefined) throw new Error(`no machine ${id}`);
    this.addresses += 1;
    info.state = 'running';
    info.booted = true;
    info.ipv4 ??= { address: `10.213.${this.addresses}.2`, netmask: '255.255.255.0', gateway: `10.213.${this.addresses}.1` };
  }

  reboot(id: number): Promise<void> {
    return this.operate('reboot', id, 'running');
  }
  shutdown(id: number): Promise<void> {
    return this.operate('shutdown', id, 'stopped');
  }
  powerOff(id: number): Promise<void> {
    return this.operate('powerOff', id, 'stopped');
  }
  powerOn(id: number): Promise<void> {
    return this.operate('powerOn', id, 'running');
  }
  destroy(id: number): Promise<void> {
    return this.operate('destroy', id, undefined);
  }

  /** Ends the operations held for `id`: successfully, or with `error`. */
  settle(id: number, error?: Error): void {
    for (const h of this.held.get(id) ?? []) (error === undefined ? h.resolve() : h.reject(error));
    this.held.delete(id);
  }

  heldOps(id: number): Op[] {
    return (this.held.get(id) ?? []).map((h) => h.op);
  }

  count(op: Op): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  private operate(op: Op, id: number, endState: MachineState | undefined): Promise<void> {
    this.calls.push({ op, id });
    const apply = () => {
      if (endState === undefined) this.infos.delete(id);
      else {
        const info = this.infos.get(id);
        if (info !== undefined) info.state = endState;
      }
    };
    if (!this.holdOperations) {
      apply();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const list = this.held.get(id) ?? [];
      const done = () => {
        apply();
        resolve();
      };
      list.push({ op, resolve: done, reject });
      this.held.set(id, list);
    });
  }
}
