/**
 * The slice of DigitalOcean's catalog the lab offers: real slugs, names and numbers (prices as of
 * 2025), so a controller validating against the catalog sees what it would in production.
 */
export interface Region {
  name: string;
  slug: string;
  features: string[];
  available: boolean;
  sizes: string[];
}

export interface Size {
  slug: string;
  memory: number;
  vcpus: number;
  disk: number;
  transfer: number;
  price_monthly: number;
  price_hourly: number;
  regions: string[];
  available: boolean;
  description: string;
  disk_info: { type: 'local'; size: { amount: number; unit: 'gib' } }[];
}

export interface Image {
  id: number;
  name: string;
  distribution: string;
  slug: string;
  public: boolean;
  regions: string[];
  created_at: string;
  type: 'base';
  min_disk_size: number;
  size_gigabytes: number;
  description: string;
  tags: string[];
  status: 'available';
  error_message: string;
}

const regionNames: Record<string, string> = {
  nyc1: 'New York 1',
  nyc3: 'New York 3',
  sfo3: 'San Francisco 3',
  ams3: 'Amsterdam 3',
  fra1: 'Frankfurt 1',
  lon1: 'London 1',
};
const regionSlugs = Object.keys(regionNames);

const size = (slug: string, vcpus: number, memory: number, disk: number, transfer: number, monthly: number): Size => ({
  slug,
  memory,
  vcpus,
  disk,
  transfer,
  price_monthly: monthly,
  price_hourly: Math.round((monthly / 672) * 1e5) / 1e5,
  regions: regionSlugs,
  available: true,
  description: 'Basic',
  disk_info: [{ type: 'local', size: { amount: disk, unit: 'gib' } }],
});

export const sizes: readonly Size[] = [
  size('s-1vcpu-1gb', 1, 1024, 25, 1, 6),
  size('s-1vcpu-2gb', 1, 2048, 50, 2, 12),
  size('s-2vcpu-2gb', 2, 2048, 60, 3, 18),
  size('s-2vcpu-4gb', 2, 4096, 80, 4, 24),
  size('s-4vcpu-8gb', 4, 8192, 160, 5, 48),
];

export const regions: readonly Region[] = regionSlugs.map((slug) => ({
  name: regionNames[slug] ?? slug,
  slug,
  features: ['backups', 'ipv6', 'metadata', 'install_agent', 'storage', 'image_transfer'],
  available: true,
  sizes: sizes.map((s) => s.slug),
}));

const image = (id: number, slug: string, distribution: string, name: string, createdAt: string, gigabytes: number): Image => ({
  id,
  name,
  distribution,
  slug,
  public: true,
  regions: regionSlugs,
  created_at: createdAt,
  type: 'base',
  min_disk_size: 15,
  size_gigabytes: gigabytes,
  description: `${distribution} ${name}`,
  tags: [],
  status: 'available',
  error_message: '',
});

export const images: readonly Image[] = [
  image(195720601, 'debian-13-x64', 'Debian', '13 x64', '2025-08-12T14:03:11Z', 1.12),
  image(139215542, 'debian-12-x64', 'Debian', '12 x64', '2023-06-12T09:45:20Z', 0.99),
  image(160232537, 'ubuntu-24-04-x64', 'Ubuntu', '24.04 (LTS) x64', '2024-04-25T16:18:58Z', 2.48),
];

/** Used when a create request names no region; DigitalOcean picks one for you too. */
export const defaultRegion = 'nyc3';

export const findRegion = (slug: string) => regions.find((r) => r.slug === slug);
export const findSize = (slug: string) => sizes.find((s) => s.slug === slug);
/** Images are addressed by slug or by numeric id, as in DigitalOcean's create request. */
export const findImage = (ref: string | number) =>
  images.find((i) => (typeof ref === 'number' ? i.id === ref : i.slug === ref || String(i.id) === ref));
