import { ApiName, checkInput, DRAIN_TIMEOUT_MAX_MS, EnvKey, EnvValue, KeepReleases, MemoryLimit, UrlPath, ValidationError, WorkerCount, wholeNumber, type DeployResult } from '@plumb/shared';
import type { RequestBody } from '../agent-client.js';
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
  /** How long the previous workers may finish requests in flight, in seconds. */
  drainTimeoutSeconds?: number;
  /** Return only once the previous workers have stopped. */
  wait?: boolean;
}

export interface DeployOutcome extends DeployResult {
  droplet: string;
  url: string;
  bundleBytes: number;
}

/** The deploy's settings as the agent gets them: only what the user gave (the rest keeps the API's current value). */
export type DeploySettings = Omit<Extract<RequestBody, { type: 'deploy' }>, 'type' | 'forward' | 'wait'>;

/** Checks everything that can be checked here, so bad input never reaches the droplet. */
export function checkDeployOptions(opts: DeployOptions): DeploySettings {
  const settings: DeploySettings = { name: checkInput(ApiName, opts.name, 'API name') };
  if (opts.path !== undefined) settings.path = checkInput(UrlPath, opts.path, 'path');
  if (opts.env !== undefined && opts.env.length > 0) {
    const env: Record<string, string> = {};
    for (const pair of opts.env) {
      const eq = pair.indexOf('=');
      if (eq < 0) throw new ValidationError(`invalid --env "${pair}": expected KEY=VALUE`);
      const key = checkInput(EnvKey, pair.slice(0, eq), '--env name');
      env[key] = checkInput(EnvValue, pair.slice(eq + 1), `--env ${key} value`);
    }
    settings.env = env;
  }
  if (opts.workers !== undefined) settings.workers = checkInput(WorkerCount, opts.workers, '--workers');
  if (opts.healthPath !== undefined) settings.healthPath = checkInput(UrlPath, opts.healthPath, '--health-path');
  if (opts.healthTimeoutSeconds !== undefined) settings.healthTimeoutMs = checkInput(wholeNumber(1, 1800), opts.healthTimeoutSeconds, '--health-timeout') * 1000;
  if (opts.memory !== undefined) settings.memoryMax = checkInput(MemoryLimit, opts.memory, '--memory');
  if (opts.keep !== undefined) settings.keepReleases = checkInput(KeepReleases, opts.keep, '--keep');
  if (opts.drainTimeoutSeconds !== undefined) settings.drainTimeoutMs = checkInput(wholeNumber(0, DRAIN_TIMEOUT_MAX_MS / 1000), opts.drainTimeoutSeconds, '--drain-timeout') * 1000;
  return settings;
}

/**
 * plumber's do_deploy_api(): packs DIR, streams it to the agent, which starts the new release
 * next to the old one and switches nginx once it answers. Running it again updates the API.
 */
export async function deploy(opts: DeployOptions, ctx: Context): Promise<DeployOutcome> {
  const checked = checkDeployOptions(opts);
  const info = await inspectApiDir(opts.dir);
  return withAgent(ctx, opts.droplet, async ({ droplet, connection }) => {
    const files = `${info.files.length} file${info.files.length === 1 ? '' : 's'}`;
    ctx.progress({ step: `uploading ${files} to ${droplet.name}` });
    const pending = connection.start<DeployResult>(
      { type: 'deploy', forward: opts.forward ?? false, wait: opts.wait ?? false, ...checked },
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
        ctx.progress({ step: `uploading ${files} to ${droplet.name}`, detail: `${(bytes / 1024 / 1024).toFixed(0)} MiB sent` });
      }
    }
    if (!settled) connection.notify({ type: 'upload-end', id: pending.id, bytes });
    const result = await pending.result;
    ctx.progress({ step: 'done', done: true });
    return { ...result, droplet: droplet.name, url: `http://${droplet.ipv4}${result.path}/`, bundleBytes: bytes };
  });
}
