import { ApiName, checkInput, DrainTimeoutSeconds, EnvKey, EnvValue, HealthTimeoutSeconds, HttpUrl, KeepReleases, MemoryLimit, UrlPath, ValidationError, WorkerCount, type DeployResult, type PackagesSpec } from '@plumb/shared';
import type { RequestBody } from '../agent/client.js';
import { inspectApiDir, packBundle } from '../api-dir/bundle.js';
import { agentProgress, type Context } from '../context.js';
import { withAgent } from '../agent/connect.js';
import { describeNeed, detectDependencies, readDependencyFiles, type DetectedDependencies } from '../api-dir/r-deps.js';

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
  /** false (--no-deps): no R package is looked for or installed. */
  deps?: boolean;
  /** Versions other than renv.lock's are errors, not warnings. */
  strictVersions?: boolean;
  /** CRAN-like repository for source builds (remembered for the API). */
  repo?: string;
  /** CRAN-like repository of binaries for the droplet's Debian (remembered for the API). */
  binaryRepo?: string;
}

export interface DeployOutcome extends DeployResult {
  /** What the controller found the API needs (null: --no-deps). */
  dependencies: { source: DetectedDependencies['source']; notes: string[] } | null;
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
  if (opts.healthTimeoutSeconds !== undefined) settings.healthTimeoutMs = checkInput(HealthTimeoutSeconds, opts.healthTimeoutSeconds, '--health-timeout') * 1000;
  if (opts.memory !== undefined) settings.memoryMax = checkInput(MemoryLimit, opts.memory, '--memory');
  if (opts.keep !== undefined) settings.keepReleases = checkInput(KeepReleases, opts.keep, '--keep');
  if (opts.drainTimeoutSeconds !== undefined) settings.drainTimeoutMs = checkInput(DrainTimeoutSeconds, opts.drainTimeoutSeconds, '--drain-timeout') * 1000;
  return settings;
}

/** The repository flags, checked; shared by deploy and deps. */
export function packagesSpec(detected: DetectedDependencies, opts: { strictVersions?: boolean; repo?: string; binaryRepo?: string }): PackagesSpec {
  return {
    needs: detected.needs,
    repo: opts.repo === undefined ? null : checkInput(HttpUrl, opts.repo, '--repo'),
    binaryRepo: opts.binaryRepo === undefined ? null : checkInput(HttpUrl, opts.binaryRepo, '--binary-repo'),
    strictVersions: opts.strictVersions ?? false,
    rVersion: detected.rVersion,
  };
}

/** The API's R packages as the controller finds them in DIR (docs/r-packages.md). */
export async function dependenciesOf(dir: string, files: string[]): Promise<DetectedDependencies> {
  return detectDependencies(await readDependencyFiles(dir, files));
}

/**
 * plumber's do_deploy_api(): packs DIR, streams it to the agent, which starts the new release
 * next to the old one and switches nginx once it answers. Running it again updates the API.
 */
export async function deploy(opts: DeployOptions, ctx: Context): Promise<DeployOutcome> {
  const checked = checkDeployOptions(opts);
  const info = await inspectApiDir(opts.dir);
  const detected = opts.deps === false ? null : await dependenciesOf(opts.dir, info.files);
  const packages = detected ? packagesSpec(detected, opts) : undefined;
  if (detected) {
    ctx.progress({ step: `R packages from ${detected.source === 'code' ? 'the code' : detected.source}: ${detected.needs.map(describeNeed).join(', ') || 'none beyond plumber'}` });
    for (const note of detected.notes) ctx.progress({ step: `note: ${note}` });
  }
  return withAgent(ctx, opts.droplet, async ({ droplet, connection }) => {
    const files = `${info.files.length} file${info.files.length === 1 ? '' : 's'}`;
    ctx.progress({ step: `uploading ${files} to ${droplet.name}` });
    const pending = connection.start<DeployResult>(
      { type: 'deploy', forward: opts.forward ?? false, wait: opts.wait ?? false, ...checked, ...(packages ? { packages } : {}) },
      { onProgress: agentProgress(ctx) },
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
    return { ...result, dependencies: detected && { source: detected.source, notes: detected.notes }, droplet: droplet.name, url: `http://${droplet.ipv4}${result.path}/`, bundleBytes: bytes };
  });
}
