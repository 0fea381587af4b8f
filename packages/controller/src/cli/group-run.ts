import type { Context } from '../context.js';
import { output, worstExit, type OutputFlags } from './run.js';

/**
 * A per-droplet command given `--group G`: run on every member (`together` for reads, `rolling`
 * for changes: one at a time, stopping at the first failure), a line or block per droplet, the
 * worst droplet's exit code.
 */
export function outputGroup<T>(flags: OutputFlags, group: string, mode: 'together' | 'rolling', work: (ctx: Context, droplet: string) => Promise<T>, text: (result: T) => string): Promise<void> {
  return output(
    flags,
    async (ctx) => (await import('../commands/group-ops.js')).onGroup(group, ctx, mode, (d) => work(ctx, String(d.id))),
    async (r) => (await import('../commands/group-ops.js')).groupRunText(r, text),
    (r) => worstExit(r.droplets.map((d) => d.error)),
  );
}
