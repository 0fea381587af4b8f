/**
 * What the DigitalOcean stand-in needs from whatever runs droplets. The lab's implementation boots
 * systemd-nspawn containers (test/lab/droplets/); the stand-in only keeps API records and turns
 * these calls into droplet statuses and action objects.
 */
export type MachineState = 'booting' | 'running' | 'stopped';

export interface MachineSpec {
  id: number;
  name: string;
  vcpus: number;
  memoryMiB: number;
  diskGiB: number;
  /** The request's user_data, handed to cloud-init through a NoCloud seed ('' when none). */
  userData: string;
  /** The OpenSSH public keys of the request's ssh_keys, for root's authorized_keys as on DigitalOcean. */
  publicKeys: string[];
}

export interface MachineAddress {
  address: string;
  netmask: string;
  gateway: string;
}

export interface MachineInfo {
  state: MachineState;
  /** True once the machine has booted at least once (DigitalOcean's `new` ends there). */
  booted: boolean;
  /** Set once the machine has an address; kept across reboots and power cycles. */
  ipv4?: MachineAddress;
}

export interface Machines {
  /** Accepts the machine and starts booting it in the background; resolves before it has booted. */
  create(spec: MachineSpec): Promise<void>;
  inspect(id: number): MachineInfo | undefined;
  /** Each resolves when the operation has finished (for reboot and power_on: booted again). */
  reboot(id: number): Promise<void>;
  shutdown(id: number): Promise<void>;
  powerOff(id: number): Promise<void>;
  powerOn(id: number): Promise<void>;
  /** Stops the machine and removes everything it had on the host. */
  destroy(id: number): Promise<void>;
}
