import * as z from 'zod';
import { groupOfTags, PlumbError, ValidationError, type UninstallResult } from '@plumb/shared';
import { withAgent } from '../agent/connect.js';
import type { Context } from '../context.js';
import { fromEnv } from '../digitalocean/client.js';
import { KnownDroplet } from '../local/droplets-state.js';
import { PLUMB_TAG } from './provision.js';

export interface DropletRow {
  name: string;
  id: number;
  ipv4: string;
  region: string;
  size: string;
  /** DigitalOcean's status, `gone` when DigitalOcean no longer has it, `external` when adopted from elsewhere. */
  status: string;
  /** Whether this controller holds the agent's pin (enrolled) and can talk to it. */
  enrolled: boolean;
  /** The group its DigitalOcean tag puts it in (`provision --group`). */
  group: string | undefined;
  /** Tagged plumb on DigitalOcean but unknown to this controller (made elsewhere). */
  foreign: boolean;
}

/** What plumb knows, joined with what DigitalOcean says now. */
export async function droplets(ctx: Context): Promise<DropletRow[]> {
  const known = await ctx.droplets.list();
  const live = await fromEnv(ctx.env).listDroplets({ tag: PLUMB_TAG });
  const rows: DropletRow[] = known.map((d: KnownDroplet) => {
    const now = live.find((l) => l.id === d.id);
    return { name: d.name, id: d.id, ipv4: d.ipv4, region: d.region, size: d.size, status: d.external ? 'external' : (now?.status ?? 'gone'), group: now ? groupOfTags(now.tags) : undefined, enrolled: d.fingerprint !== null, foreign: false };
  });
  for (const l of live.filter((l) => !known.some((k) => k.id === l.id))) {
    rows.push({ name: l.name, id: l.id, ipv4: l.publicIpv4 ?? '', region: l.region, size: l.size, status: l.status, group: groupOfTags(l.tags), enrolled: false, foreign: true });
  }
  return rows;
}

/**
 * What another machine needs to manage a droplet: its name, id, address, uuid and pinned
 * certificate fingerprint. None of it is secret (the pin is a hash of a public certificate);
 * access comes from the droplet trusting that machine's key (`plumb keys add`).
 */
export const DropletsExport = z.object({ plumbDroplets: z.literal(1), droplets: z.array(KnownDroplet) });
export type DropletsExport = z.infer<typeof DropletsExport>;

export async function exportDroplets(names: string[], ctx: Context): Promise<DropletsExport> {
  const droplets = names.length === 0 ? await ctx.droplets.list() : await Promise.all(names.map((n) => ctx.droplets.find(n)));
  const unenrolled = droplets.find((d) => d.fingerprint === null);
  if (unenrolled) throw new PlumbError('NOT_ENROLLED', `droplet ${unenrolled.name} was never enrolled: there is no pin to share`, `destroy it with \`plumb destroy ${unenrolled.name}\``);
  return { plumbDroplets: 1, droplets };
}

export interface ForgetResult {
  name: string;
  external: boolean;
}

/** Drops a droplet from this controller only: its agent keeps running (`plumb uninstall` removes it). */
export async function forget(which: string, ctx: Context): Promise<ForgetResult> {
  const droplet = await ctx.droplets.find(which);
  await ctx.droplets.forget(droplet.id);
  return { name: droplet.name, external: droplet.external ?? false };
}

export interface UninstallOutcome extends ForgetResult {
  /** What the agent removes from the host once it has answered. */
  removing: string[];
}

/** Removes the agent from the droplet (its APIs keep serving), then forgets the droplet here. */
export async function uninstall(which: string, ctx: Context): Promise<UninstallOutcome> {
  const { removing } = await withAgent(ctx, which, ({ connection }) => connection.request<UninstallResult>({ type: 'uninstall' }));
  return { ...(await forget(which, ctx)), removing };
}

export interface ImportResult {
  imported: KnownDroplet[];
  /** Already known with the same pin. */
  unchanged: string[];
}

/** Adds exported droplets to what this machine knows; a droplet known with another pin or uuid is refused, nothing saved. */
export async function importDroplets(text: string, ctx: Context): Promise<ImportResult> {
  let parsed: DropletsExport;
  try {
    parsed = DropletsExport.parse(JSON.parse(text));
  } catch (err) {
    throw new ValidationError(`not a droplets export: ${err instanceof z.ZodError ? (err.issues[0]?.message ?? '') : (err as Error).message}`, 'give the output of `plumb droplets export` (a file, or - for stdin)');
  }
  const known = await ctx.droplets.list();
  const result: ImportResult = { imported: [], unchanged: [] };
  for (const d of parsed.droplets) {
    const same = known.find((k) => k.id === d.id || k.name === d.name);
    if (same && (same.uuid !== d.uuid || same.fingerprint !== d.fingerprint || same.id !== d.id)) {
      throw new PlumbError('DROPLET_CONFLICT', `this machine knows droplet ${same.name} (id ${same.id}) with another identity or pin than the export says`, 'if it was rebuilt, forget the old one first (`plumb destroy`), or check where the export came from');
    }
    if (same) result.unchanged.push(d.name);
    else result.imported.push(d);
  }
  for (const d of result.imported) await ctx.droplets.save(d);
  return result;
}
