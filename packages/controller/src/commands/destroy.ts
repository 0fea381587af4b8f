import { PlumbError } from '@plumb/shared';
import type { Context } from '../context.js';
import { fromEnv } from '../digitalocean/client.js';

export interface DestroyResult {
  name: string;
  id: number;
  /** `already-gone` when DigitalOcean no longer had it; plumb forgets it either way. */
  outcome: 'deleted' | 'already-gone';
}

/** Deletes a droplet through the API and forgets it (its pin, its address). */
export async function destroy(which: string, ctx: Context): Promise<DestroyResult> {
  const droplet = await ctx.droplets.find(which);
  if (droplet.external && droplet.id > 0) throw new PlumbError('EXTERNAL_HOST', `${droplet.name} is DigitalOcean droplet ${droplet.id}, adopted but never tagged for plumb: plumb does not destroy it`, `set DIGITALOCEAN_ACCESS_TOKEN and run \`plumb adopt root@${droplet.ipv4}\` again to tag it, or \`plumb forget ${droplet.name}\``);
  if (droplet.external) throw new PlumbError('EXTERNAL_HOST', `${droplet.name} was adopted from outside DigitalOcean: plumb cannot destroy it`, `\`plumb forget ${droplet.name}\` drops it from this controller`);
  const outcome = await fromEnv(ctx.env).deleteDroplet(droplet.id);
  await ctx.droplets.forget(droplet.id);
  return { name: droplet.name, id: droplet.id, outcome };
}
