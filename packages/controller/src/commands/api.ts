import { ApiName, ValidationError } from '@plumb/shared';
import type { Context } from '../context.js';
import { withAgent } from '../connect.js';

function apiName(name: string): string {
  const parsed = ApiName.safeParse(name);
  if (!parsed.success) throw new ValidationError(`invalid API name "${name}": ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** plumber's do_remove_api(): stops it, removes its unit, its nginx location and (unless kept) its files. */
export async function remove(name: string, opts: { keepFiles?: boolean; droplet?: string }, ctx: Context) {
  const checked = apiName(name);
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<{ name: string; keptFiles: boolean; wasForwarded: boolean }>({ type: 'remove', name: checked, keepFiles: opts.keepFiles ?? false }));
}

/** plumber's do_forward(): `/` serves NAME. */
export async function forward(name: string, opts: { droplet?: string }, ctx: Context) {
  const checked = apiName(name);
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<{ forward: string }>({ type: 'forward', name: checked }));
}

/** plumber's do_remove_forward(). */
export async function unforward(opts: { droplet?: string }, ctx: Context) {
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<{ forward: null; was: string | null }>({ type: 'unforward' }));
}

/** Restarts the API's R workers one by one, each waited for. */
export async function restart(name: string, opts: { droplet?: string }, ctx: Context) {
  const checked = apiName(name);
  return withAgent(ctx, opts.droplet, ({ connection }) =>
    connection.request<{ name: string; workers: number; tookMs: number }>({ type: 'restart', name: checked }, { onProgress: (step, detail) => ctx.progress({ step, ...(detail ? { detail } : {}) }) }),
  );
}
