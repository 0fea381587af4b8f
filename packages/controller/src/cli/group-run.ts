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

/**
 * A per-droplet command that takes `--group`: on the one droplet (--droplet, or the only one plumb
 * knows) without it, else on each of the group's as outputGroup does.
 */
export function onDroplets<T>(flags: OutputFlags & { droplet?: string }, group: string | undefined, mode: 'together' | 'rolling', work: (ctx: Context, droplet: string | undefined) => Promise<T>, text: (result: T) => string): Promise<void> {
  return group === undefined ? output(flags, (ctx) => work(ctx, flags.droplet), text) : outputGroup(flags, group, mode, work, text);
}
