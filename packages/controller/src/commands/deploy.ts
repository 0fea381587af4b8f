import { ApiName, DEFAULT_WORKERS, EnvKey, EnvValue, MemoryLimit, RELEASES_KEPT, UrlPath, ValidationError, type DeployResult } from '@plumb/shared';
import { inspectApiDir, packBundle } from '../bundle.js';
import type { Context } from '../context.js';
import { withAgent } from '../connect.js';

export interface DeployOptions {
  dir: string;
  name: string;
  path?: string;
  forward?: boolean;
  droplet?: string;
  /** `KEY=VALUE` pairs, as given on the command line. */
  env?: string[];
  workers?: number;
  healthPath?: string;
  healthTimeoutSeconds?: number;
  /** systemd MemoryMax= for each worker, e.g. 512M. */
  memory?: string;
  /** Releases kept on the droplet for rollback. */
  keep?: number;
}

export interface DeployOutcome extends DeployResult {
  droplet: string;
  url: string;
  bundleBytes: number;
}

/** Checks everything that can be checked here, so bad input never reaches the droplet. */
export function checkDeployOptions(opts: DeployOptions): { name: string; path: string; env: Record<string, string>; workers: number; healthPath: string | null; memoryMax: string | null; keepReleases: number } {
  const name = ApiName.safeParse(opts.name);
  if (!name.success) throw new ValidationError(`invalid API name "${opts.name}": ${name.error.issues[0]?.message}`);
  const path = UrlPath.safeParse(opts.path ?? `/${opts.name}`);
  if (!path.success) throw new ValidationError(`invalid path "${opts.path}": ${path.error.issues[0]?.message}`);
  const env: Record<string, string> = {};
  for (const pair of opts.env ?? []) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const keyCheck = EnvKey.safeParse(key);
    if (eq < 0 || !keyCheck.success) throw new ValidationError(`invalid --env "${pair}": ${eq < 0 ? 'expected KEY=VALUE' : keyCheck.error?.issues[0]?.message}`);
    const value = EnvValue.safeParse(pair.slice(eq + 1));
    if (!value.success) throw new ValidationError(`invalid --env ${key}: ${value.error.issues[0]?.message}`);
    env[key] = value.data;
  }
  const workers = opts.workers ?? DEFAULT_WORKERS;
  if (!Number.isInteger(workers) || workers < 1 || workers > 16) throw new ValidationError(`invalid --workers "${opts.workers}": a whole number from 1 to 16`);
  const healthPath = opts.healthPath === undefined ? null : UrlPath.safeParse(opts.healthPath);
  if (healthPath && !healthPath.success) throw new ValidationError(`invalid --health-path "${opts.healthPath}": ${healthPath.error.issues[0]?.message}`);
  const memory = opts.memory === undefined ? null : MemoryLimit.safeParse(opts.memory);
  if (memory && !memory.success) throw new ValidationError(`invalid --memory "${opts.memory}": ${memory.error.issues[0]?.message}`);
  const keepReleases = opts.keep ?? RELEASES_KEPT;
  if (!Number.isInteger(keepReleases) || keepReleases < 1 || keepReleases > 50) throw new ValidationError(`invalid --keep "${opts.keep}": a whole number from 1 to 50`);
  return { name: name.data, path: path.data, env, workers, healthPath: healthPath ? healthPath.data! : null, memoryMax: memory ? memory.data! : null, keepReleases };
}

/**
 * plumber's do_deploy_api(): packs DIR, streams it to the agent, which starts the new release
 * next to the old one and switches nginx once it answers. Running it again updates the API.
 */
export async function deploy(opts: DeployOptions, ctx: Context): Promise<DeployOutcome> {
  const checked = checkDeployOptions(opts);
  const info = await inspectApiDir(opts.dir);
  return withAgent(ctx, opts.droplet, async ({ droplet, connection }) => {
    ctx.progress({ step: `uploading ${info.files.length} files to ${droplet.name}` });
    const pending = connection.start<DeployResult>(
      {
        type: 'deploy',
        name: checked.name,
        path: checked.path,
        forward: opts.forward ?? false,
        env: checked.env,
        workers: checked.workers,
        healthPath: checked.healthPath,
        healthTimeoutMs: (opts.healthTimeoutSeconds ?? 120) * 1000,
        memoryMax: checked.memoryMax,
        keepReleases: checked.keepReleases,
      },
      { onProgress: (step, detail) => ctx.progress({ step, ...(detail ? { detail } : {}) }) },
    );
    let settled = false;
    pending.result.then(() => (settled = true), () => (settled = true));
    let bytes = 0;
    let shown = 0;
    for await (const chunk of packBundle(opts.dir, info)) {
      if (settled) break;
      bytes += (chunk as Buffer).length;
      await connection.sendBinary(chunk as Buffer);
      // Bytes sent, for bundles big enough to take a while: one line per MiB at most.
      if (bytes - shown >= 1024 * 1024) {
        shown = bytes;
        ctx.progress({ step: `uploading ${info.files.length} files to ${droplet.name}`, detail: `${(bytes / 1024 / 1024).toFixed(0)} MiB sent` });
      }
    }
    if (!settled) connection.notify({ type: 'upload-end', id: pending.id, bytes });
    const result = await pending.result;
    ctx.progress({ step: 'done', done: true });
    return { ...result, droplet: droplet.name, url: `http://${droplet.ipv4}${result.path}/`, bundleBytes: bytes };
  });
}
