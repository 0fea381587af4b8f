import type { MachineInfo } from './machines.js';
import type { DropletRecord } from './store.js';

export type DropletStatus = 'new' | 'active' | 'off';

/**
 * DigitalOcean's `new` lasts until the droplet has booted and has a public address (clients wait
 * for both); after that a stopped machine is `off` and anything else, even mid-reboot, `active`.
 */
export function dropletStatus(info: MachineInfo | undefined): DropletStatus {
  if (info === undefined || !info.booted || info.ipv4 === undefined) return 'new';
  return info.state === 'stopped' ? 'off' : 'active';
}

function nextBackupWindow(droplet: DropletRecord): { start: string; end: string } | null {
  if (!droplet.features.includes('backups')) return null;
  const start = new Date(droplet.createdAt);
  start.setUTCHours(24, 0, 0, 0);
  return { start: start.toISOString(), end: new Date(start.getTime() + 23 * 3_600_000).toISOString() };
}

/** The droplet object in full, with every field the spec marks required. */
export function renderDroplet(droplet: DropletRecord, info: MachineInfo | undefined) {
  const { size, region, image } = droplet;
  const status = dropletStatus(info);
  return {
    id: droplet.id,
    name: droplet.name,
    memory: size.memory,
    vcpus: size.vcpus,
    disk: size.disk,
    disk_info: size.disk_info,
    locked: false,
    status,
    kernel: null,
    created_at: droplet.createdAt,
    features: droplet.features,
    backup_ids: [],
    next_backup_window: nextBackupWindow(droplet),
    snapshot_ids: [],
    image,
    volume_ids: [],
    size,
    size_slug: size.slug,
    networks: {
      v4:
        info?.ipv4 === undefined
          ? []
          : [{ ip_address: info.ipv4.address, netmask: info.ipv4.netmask, gateway: info.ipv4.gateway, type: 'public' }],
      v6: [],
    },
    region,
    tags: droplet.tags,
    vpc_uuid: droplet.vpcUuid,
  };
}
