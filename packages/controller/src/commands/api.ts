import {
  ApiName,
  checkInput,
  ReleaseId,
  WorkerCount,
  type ForwardResult,
  type GroupChange,
  type ReleasesResult,
  type RemoveResult,
  type RestartResult,
  type RollbackResult,
  type ScaleResult,
  type UnforwardResult,
} from '@plumb/shared';
import { agentProgress, type Context } from '../context.js';
import { withAgent } from '../agent/connect.js';

const apiName = (name: string) => checkInput(ApiName, name, 'API name');

/** plumber's do_remove_api(): stops it, removes its unit, its nginx location and (unless kept) its files. */
export async function remove(name: string, opts: { keepFiles?: boolean; droplet?: string }, ctx: Context) {
  const checked = apiName(name);
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<RemoveResult>({ type: 'remove', name: checked, keepFiles: opts.keepFiles ?? false }));
}

/** plumber's do_forward(): `/` serves NAME. */
export async function forward(name: string, opts: { droplet?: string }, ctx: Context) {
  const checked = apiName(name);
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<ForwardResult>({ type: 'forward', name: checked }));
}

/** plumber's do_remove_forward(). */
export async function unforward(opts: { droplet?: string }, ctx: Context) {
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<UnforwardResult>({ type: 'unforward' }));
}

/** Options of the commands that switch an API to new workers. */
export interface SwitchOptions {
  droplet?: string;
  /** Return only once the previous workers have drained and stopped. */
  wait?: boolean;
}

/** New R processes for the API, started next to the old ones; the old ones drain. */
export async function restart(name: string, opts: SwitchOptions, ctx: Context) {
  const checked = apiName(name);
  return withAgent(ctx, opts.droplet, ({ connection }) =>
    connection.request<RestartResult>({ type: 'restart', name: checked, wait: opts.wait ?? false }, { onProgress: agentProgress(ctx) }),
  );
}

/** An API's releases kept on the droplet, oldest first. */
export async function releases(name: string, opts: { droplet?: string }, ctx: Context) {
  const checked = apiName(name);
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<ReleasesResult>({ type: 'releases', name: checked }));
}

/** Back to the release before the live one, or to `to`, through the same health gate as a deploy. */
export async function rollback(name: string, opts: SwitchOptions & { to?: string; group?: GroupChange }, ctx: Context) {
  const checked = apiName(name);
  const to = opts.to === undefined ? null : checkInput(ReleaseId, opts.to, '--to', `see \`plumb releases ${checked}\``);
  return withAgent(ctx, opts.droplet, ({ connection }) =>
    connection.request<RollbackResult>({ type: 'rollback', name: checked, to, wait: opts.wait ?? false, ...(opts.group ? { group: opts.group } : {}) }, { onProgress: agentProgress(ctx) }),
  );
}

/** Another number of R workers, without downtime. */
export async function scale(name: string, workers: number, opts: SwitchOptions, ctx: Context) {
  const checked = apiName(name);
  checkInput(WorkerCount, workers, 'number of workers');
  return withAgent(ctx, opts.droplet, ({ connection }) =>
    connection.request<ScaleResult>({ type: 'scale', name: checked, workers, wait: opts.wait ?? false }, { onProgress: agentProgress(ctx) }),
  );
}
