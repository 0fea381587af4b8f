import path from 'node:path';
import * as z from 'zod';
import { DropletName, DropletUuid, Fingerprint, PlumbError } from '@plumb/shared';
import { withFileLock } from '@plumb/shared/files';
import { configDir, readJson, writePrivateJson } from './config.js';

/** What the controller knows of a droplet it provisioned: where it is and whom to trust there. */
export const KnownDroplet = z.object({
  name: DropletName,
  id: z.number().int(),
  uuid: DropletUuid,
  ipv4: z.string(),
  agentPort: z.number().int(),
  /** The agent's pinned certificate fingerprint; null until enrolment succeeded. */
  fingerprint: Fingerprint.nullable(),
  region: z.string(),
  size: z.string(),
  createdAt: z.string(),
  /**
   * Adopted over SSH (`plumb adopt`) and not tagged on DigitalOcean, so DigitalOcean is never asked
   * about it: a host elsewhere (its id is plumb's own, negative) or a DigitalOcean droplet adopted
   * without a usable token (its real id, from its metadata; adopting it again tags it).
   */
  external: z.boolean().optional(),
});
export type KnownDroplet = z.infer<typeof KnownDroplet>;

const File = z.object({ version: z.literal(1), droplets: z.array(KnownDroplet) });

/** Picks one of several droplet names (the CLI asks at a terminal); given only when someone can answer. */
export type Chooser = (names: string[]) => Promise<string>;

export class DropletStore {
  constructor(
    private readonly file = path.join(configDir(), 'droplets.json'),
    private readonly choose?: Chooser,
  ) {}

  async list(): Promise<KnownDroplet[]> {
    const raw = await readJson(this.file);
    if (raw === undefined) return [];
    const parsed = File.safeParse(raw);
    if (!parsed.success) throw new PlumbError('STATE_DAMAGED', `${this.file} is damaged: ${parsed.error.issues[0]?.message ?? ''}`, 'fix or remove the file; `plumb droplets` rebuilds nothing by itself');
    return parsed.data.droplets;
  }

  /**
   * By name or DigitalOcean id. With no argument: the only droplet; with several, the one the
   * chooser picks, or (no one to ask) an error naming them.
   */
  async find(which?: string): Promise<KnownDroplet> {
    const droplets = await this.list();
    if (which === undefined) {
      if (droplets.length === 1 && droplets[0]) return droplets[0];
      if (droplets.length === 0) throw new PlumbError('DROPLET_AMBIGUOUS', 'plumb knows no droplet', 'run `plumb provision` first');
      const names = droplets.map((d) => d.name);
      if (!this.choose) throw new PlumbError('DROPLET_AMBIGUOUS', `plumb knows ${droplets.length} droplets (${names.join(', ')}) and no --droplet was given`, `say which with --droplet NAME, e.g. --droplet ${names[0]}`);
      which = await this.choose(names);
    }
    const found = droplets.find((d) => d.name === which || String(d.id) === which);
    if (!found) throw new PlumbError('DROPLET_UNKNOWN', `plumb knows no droplet "${which}"`, 'see `plumb droplets`');
    return found;
  }

  async save(droplet: KnownDroplet): Promise<void> {
    await this.change((droplets) => [...droplets.filter((d) => d.id !== droplet.id), droplet]);
  }

  async forget(id: number): Promise<void> {
    await this.change((droplets) => droplets.filter((d) => d.id !== id));
  }

  /** Read, change and write under the file's lock: another plumb process may be saving too. */
  private async change(edit: (droplets: KnownDroplet[]) => KnownDroplet[]): Promise<void> {
    await withFileLock(this.file, async () => writePrivateJson(this.file, { version: 1, droplets: edit(await this.list()) }));
  }
}
