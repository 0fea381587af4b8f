import type { Context } from '../context.js';
import { fromEnv } from '../digitalocean.js';
import type { KnownDroplet } from '../droplets-state.js';
import { PLUMB_TAG } from './provision.js';

export interface DropletRow {
  name: string;
  id: number;
  ipv4: string;
  region: string;
  size: string;
  /** DigitalOcean's status, or `gone` when DigitalOcean no longer has it. */
  status: string;
  /** Whether this controller holds the agent's pin (enrolled) and can talk to it. */
  enrolled: boolean;
  /** Tagged plumb on DigitalOcean but unknown to this controller (made elsewhere). */
  foreign: boolean;
}

/** What plumb knows, joined with what DigitalOcean says now. */
export async function droplets(ctx: Context): Promise<DropletRow[]> {
  const known = await ctx.droplets.list();
  const live = await fromEnv(ctx.env).listDroplets({ tag: PLUMB_TAG });
  const rows: DropletRow[] = known.map((d: KnownDroplet) => {
    const now = live.find((l) => l.id === d.id);
    return { name: d.name, id: d.id, ipv4: d.ipv4, region: d.region, size: d.size, status: now?.status ?? 'gone', enrolled: d.fingerprint !== null, foreign: false };
  });
  for (const l of live.filter((l) => !known.some((k) => k.id === l.id))) {
    rows.push({ name: l.name, id: l.id, ipv4: l.publicIpv4 ?? '', region: l.region, size: l.size, status: l.status, enrolled: false, foreign: true });
  }
  return rows;
}
