import { closeSync, createWriteStream, openSync, read } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { AGENT_FEATURES, ApiName, checkEnvValue, checkInput, DELTA_MIN_BYTES, DrainTimeoutSeconds, EnvKey, HealthTimeoutSeconds, HttpUrl, KeepReleases, MemoryLimit, PlumbError, R_PACKAGES_MAX, UrlPath, ValidationError, WorkerCount, type BundleFile, type DeployResult, type GroupChange, type GroupMark, type PackagesSpec } from '@plumb/shared';
import type { AgentConnection, PendingRequest, RequestBody } from '../agent/client.js';
import { bundleManifest, bundleTooLarge, inspectApiDir, packBundle, refuseOverRelease, type BundleInfo } from '../api-dir/bundle.js';
import { agentProgress, type Context } from '../context.js';
import { connectAgent, withOpened } from '../agent/connect.js';
import { describeNeed, detectDependencies, readDependencyFiles, type DetectedDependencies } from '../api-dir/r-deps.js';

export interface DeployOptions {
  dir: string;
  name: string;
  path?: string;
  forward?: boolean;
  droplet?: string;
  /** `KEY=VALUE` pairs, as given on the command line. None given: the API keeps the env it has. */
  env?: string[];
  /** The env given is the API's whole env, even when empty (a copied release: group sync). */
  replaceEnv?: boolean;
  workers?: number;
  /** null: none (any answer below 500 will do), as a copied release may say. */
  healthPath?: string | null;
  healthTimeoutSeconds?: number;
  /** systemd MemoryMax= for each worker, e.g. 512M; null: no limit. */
  memory?: string | null;
  /** Releases kept on the droplet for rollback. */
  keep?: number;
  /** How long the previous workers may finish requests in flight, in seconds. */
  drainTimeoutSeconds?: number;
  /** Return only once the previous workers have stopped. */
  wait?: boolean;
  /** Keep a warm spare (an R process with plumber loaded) for faster redeploys: true always, false never, 'auto' where it pays; undefined: as it was. */
  spare?: boolean | 'auto';
  /** false (--no-deps): no R package is looked for or installed. */
  deps?: boolean;
  /** Versions other than renv.lock's are errors, not warnings. */
  strictVersions?: boolean;
  /** CRAN-like repository for source builds (remembered for the API). */
  repo?: string;
  /** CRAN-like repository of binaries for the droplet's Debian (remembered for the API). */
  binaryRepo?: string;
  /** Send every file, even those the droplet has in an earlier release. */
  full?: boolean;
  /** Part of a group deploy, or a copy of a group's release: the mark its agent keeps. */
  groupChange?: GroupChange & { kind?: GroupMark['kind'] };
}

/**
 * What travelled: `delta` when the agent was sent the file list and then only the files it
 * lacked, `full` when the bundle held every file (--full, a small API, an agent from before).
 */
export interface UploadReport {
  mode: 'full' | 'delta';
  /** Files in the bundle sent, of `totalFiles`. */
  files: number;
  totalFiles: number;
  /** Bytes sent on the socket: the compressed bundle, plus the file list for a delta. */
  bytes: number;
}

export interface DeployOutcome extends DeployResult {
  /** What the controller found the API needs (null: --no-deps). */
  dependencies: { source: DetectedDependencies['source']; notes: string[] } | null;
  droplet: string;
  url: string;
  /** The compressed bundle's bytes, as sent. */
  bundleBytes: number;
  upload: UploadReport;
}

/** The deploy's settings as the agent gets them: only what the user gave (the rest keeps the API's current value). */
export type DeploySettings = Omit<Extract<RequestBody, { type: 'deploy' }>, 'type' | 'forward' | 'wait'>;

/** `--spare auto` asked of agents from before it (named): they know --spare and --no-spare only. */
export function spareAutoRefused(droplets: readonly string[]): PlumbError {
  const which = droplets.length === 1 ? `the agent on ${droplets[0]} is` : `the agents on ${droplets.join(', ')} are`;
  const upgrade = droplets.map((d) => `\`plumb upgrade --droplet ${d}\``).join(', ');
  return new PlumbError('AGENT_OUTDATED', `${which} too old for --spare auto (${droplets.length === 1 ? 'it knows' : 'they know'} --spare and --no-spare); nothing was deployed`, `run ${upgrade}, or choose --spare or --no-spare`);
}

/** Checks everything that can be checked here, so bad input never reaches the droplet. */
export function checkDeployOptions(opts: DeployOptions): DeploySettings {
  const settings: DeploySettings = { name: checkInput(ApiName, opts.name, 'API name') };
  if (opts.path !== undefined) settings.path = checkInput(UrlPath, opts.path, 'path');
  if (opts.env !== undefined && (opts.env.length > 0 || opts.replaceEnv === true)) {
    const env: Record<string, string> = {};
    for (const pair of opts.env) {
      const eq = pair.indexOf('=');
      // The argument may be a secret typed without its name: it is not repeated in the message.
      if (eq < 0) throw new ValidationError('invalid --env: an argument has no "=" (expected KEY=VALUE)', 'for a secret, use `plumb secrets set NAME KEY` (it reads the value from stdin)');
      const key = checkInput(EnvKey, pair.slice(0, eq), '--env name');
      env[key] = checkEnvValue(pair.slice(eq + 1), `--env ${key}`);
    }
    settings.env = env;
  }
  if (opts.workers !== undefined) settings.workers = checkInput(WorkerCount, opts.workers, '--workers');
  if (opts.healthPath !== undefined) settings.healthPath = opts.healthPath === null ? null : checkInput(UrlPath, opts.healthPath, '--health-path');
  if (opts.healthTimeoutSeconds !== undefined) settings.healthTimeoutMs = checkInput(HealthTimeoutSeconds, opts.healthTimeoutSeconds, '--health-timeout') * 1000;
  if (opts.memory !== undefined) settings.memoryMax = opts.memory === null ? null : checkInput(MemoryLimit, opts.memory, '--memory');
  if (opts.keep !== undefined) settings.keepReleases = checkInput(KeepReleases, opts.keep, '--keep');
  if (opts.drainTimeoutSeconds !== undefined) settings.drainTimeoutMs = checkInput(DrainTimeoutSeconds, opts.drainTimeoutSeconds, '--drain-timeout') * 1000;
  if (opts.spare !== undefined) settings.spare = opts.spare;
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
  const detected = detectDependencies(await readDependencyFiles(dir, files));
  // Refused here, in words, rather than by the request's schema (an unreadable message) on the droplet.
  if (detected.needs.length > R_PACKAGES_MAX) {
    throw new ValidationError(`the API needs ${detected.needs.length} R packages (from ${detected.source === 'code' ? 'its code' : detected.source}); plumb installs at most ${R_PACKAGES_MAX} for one API`, 'deploy with --no-deps and install them on the droplet yourself, or split the API');
  }
  return detected;
}

/** What a deploy sends, found (and, for several droplets, packed) once. */
export interface PackedBundle {
  info: Awaited<ReturnType<typeof inspectApiDir>>;
  detected: DetectedDependencies | null;
  /**
   * The gzip tar stream packed once, to send the same bytes to several droplets, packed when the
   * first of them needs the whole bundle (those that take a delta never do); each call of what it
   * gives reads it from the start. undefined: packed while sending.
   */
  whole: (() => Promise<() => Packed>) | undefined;
  /** The files' hashes for agents that take only what they lack (null: `--full`). */
  hashing: Promise<BundleFile[]> | null;
  /** The package request as another droplet recorded it (a release copied within a group), instead of `detected`'s. */
  packages?: PackagesSpec;
  /** Lets go of what `whole` packed (its temporary file's descriptor); `whole` may not be called after. Safe to call twice. */
  close: () => Promise<void>;
}

/**
 * Reads DIR and its R dependencies; with `keep`, the bundle is packed into a temporary file once
 * (on first need) so every droplet gets the same bytes. The caller closes it when done.
 */
export async function prepareBundle(opts: DeployOptions, ctx: Context, keep: boolean): Promise<PackedBundle> {
  const info = await inspectApiDir(opts.dir);
  await refuseOverRelease(opts.dir, opts.name, info.files);
  const detected = opts.deps === false ? null : await dependenciesOf(opts.dir, info.files);
  if (detected) {
    ctx.progress({ step: `R packages from ${detected.source === 'code' ? 'the code' : detected.source}: ${detected.needs.map(describeNeed).join(', ') || 'none beyond plumber'}` });
    for (const note of detected.notes) ctx.progress({ step: `note: ${note}` });
  }
  // Hashing runs while the connection opens; it is used only if the agent can take a file list.
  const hashing = opts.full ? null : bundleManifest(opts.dir, info);
  hashing?.catch(() => undefined);
  if (!keep) return { info, detected, whole: undefined, hashing, close: () => Promise.resolve() };
  let packing: Promise<PackedFile> | undefined;
  let closed = false;
  return {
    info,
    detected,
    hashing,
    whole: async () => {
      if (closed) throw new PlumbError('INTERNAL', 'the packed bundle was read after it was closed');
      return (await (packing ??= packWhole(opts.dir, info))).read;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      // A packing under way is waited for: its descriptor is closed once it exists (a failed one closed its own).
      (await packing?.catch(() => undefined))?.close();
    },
  };
}

/** A packed bundle's bytes, in order. */
export type Packed = AsyncIterable<Buffer> | Iterable<Buffer>;

/** The packed temporary file: each `read()` gives it from its start; `close()` lets go of its descriptor. */
interface PackedFile {
  read: () => Packed;
  close: () => void;
}

/**
 * Packs into a temporary file, not memory (a bundle may be BUNDLE_MAX_BYTES). The file is unlinked
 * at once and read through its descriptor, so nothing is left behind however the command ends (the
 * directory goes too when the open fails); the descriptor is closed by `close()`, or by the write
 * stream when the packing fails. Reads are positioned, so members deployed in parallel each read it whole.
 */
async function packWhole(dir: string, info: BundleInfo): Promise<PackedFile> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'plumb-bundle-'));
  let fd: number;
  try {
    fd = openSync(path.join(tmp, 'bundle.tar.gz'), 'w+', 0o600);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  // A packing that fails closes the descriptor itself: the pipeline destroys the write stream, and an
  // fs stream closes its descriptor when destroyed, autoClose or not (closing it again here would
  // close whatever file took the number meanwhile).
  await pipeline(packBundle(dir, info), createWriteStream('', { fd, autoClose: false }));
  return { read: () => readFrom(fd), close: () => closeSync(fd) };
}

const readAt = promisify(read);
/** Bytes read from the packed file per chunk. */
const PACKED_CHUNK_BYTES = 64 * 1024;

/**
 * The packed file from its start, by positioned reads. Not a read stream: a stream given the
 * descriptor closes it when destroyed, and a member whose send stops early (its agent answered, its
 * connection dropped) would close it under the others, or let the number be reused by a file
 * opened next, whose bytes they would then send.
 */
async function* readFrom(fd: number): AsyncGenerator<Buffer> {
  for (let position = 0; ; ) {
    const { bytesRead, buffer } = await readAt(fd, Buffer.allocUnsafe(PACKED_CHUNK_BYTES), 0, PACKED_CHUNK_BYTES, position);
    if (bytesRead === 0) return;
    position += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/**
 * The mark a deploy asks its agent to keep. An agent from before copied marks would keep a
 * rollback's copy as a `deploy` mark, which a later `rollback --group` would undo: it keeps the
 * mark it had instead, as such agents always did.
 */
function markFor(change: DeployOptions['groupChange'], features: readonly string[]): { group: NonNullable<DeployOptions['groupChange']> } | undefined {
  if (!change) return undefined;
  if (change.kind === 'rollback' && !features.includes(AGENT_FEATURES.copiedMarks)) return undefined;
  return { group: change };
}

/**
 * plumber's do_deploy_api(): packs DIR, streams it to the agent, which starts the new release
 * next to the old one and switches nginx once it answers. Running it again updates the API.
 */
export async function deploy(opts: DeployOptions, ctx: Context, bundle?: PackedBundle): Promise<DeployOutcome> {
  const checked = checkDeployOptions(opts);
  // The connection's round trips (TCP, TLS, the upgrade) go while the directory is read and its R
  // code scanned. A directory refused here closes it unused: nothing reached the droplet.
  const abandon = new AbortController();
  const opening = connectAgent(ctx, opts.droplet, { signal: abandon.signal });
  opening.catch(() => undefined); // told once awaited (withOpened), unless the directory's error is told first
  let prepared: PackedBundle;
  let packages: PackagesSpec | undefined;
  try {
    prepared = bundle ?? (await prepareBundle(opts, ctx, false));
    packages = prepared.packages ?? (prepared.detected ? packagesSpec(prepared.detected, opts) : undefined);
  } catch (err) {
    abandon.abort();
    void opening.then(({ connection }) => connection.close(), () => undefined);
    throw err;
  }
  const { info, detected, whole, hashing } = prepared;
  return withOpened(opening, async ({ droplet, connection }) => {
    if (checked.spare === 'auto' && !connection.hello.features.includes(AGENT_FEATURES.spareAuto)) throw spareAutoRefused([droplet.name]);
    const manifest = hashing && connection.hello.features.includes(AGENT_FEATURES.deltaUpload) ? await hashing : null;
    // A small API goes whole: asking first would cost a round trip to save less.
    const delta = manifest && manifest.reduce((n, f) => n + f.size, 0) >= DELTA_MIN_BYTES ? manifest : null;
    let needed: (files: number[]) => void = () => undefined;
    const need = new Promise<number[]>((resolve) => (needed = resolve));
    const pending = connection.start<DeployResult>(
      { type: 'deploy', forward: opts.forward ?? false, wait: opts.wait ?? false, ...checked, ...(packages ? { packages } : {}), ...(delta ? { manifest: delta } : {}), ...(markFor(opts.groupChange, connection.hello.features) ?? {}) },
      { onProgress: agentProgress(ctx), onNeed: needed },
    );
    let settled = false;
    pending.result.then(() => (settled = true), () => (settled = true));
    const files = delta ? await filesNeeded(delta, need, pending) : info.files;
    // The whole bundle packed once for a group goes as packed; a file list's part is packed here.
    const packed = files === info.files ? (await whole?.())?.() : undefined;
    const bytes = files === null ? 0 : await sendBundle(ctx, connection, pending, opts.dir, { ...info, files }, droplet.name, info.files.length, () => settled, packed);
    const result = await pending.result.catch(async (err: unknown) => {
      // The agent knows only that the stream passed its cap; the files that made it big are here.
      // A copied release (group sync) has no directory here to look in: its refusal stays the agent's.
      throw err instanceof PlumbError && err.code === 'BUNDLE_TOO_LARGE' ? await bundleTooLarge(opts.dir, opts.name, files ?? info.files).catch(() => err) : err;
    });
    ctx.progress({ step: 'done', done: true });
    const upload: UploadReport = { mode: delta ? 'delta' : 'full', files: files?.length ?? 0, totalFiles: info.files.length, bytes: bytes + (delta ? JSON.stringify(delta).length : 0) };
    return { ...result, dependencies: detected && { source: detected.source, notes: detected.notes }, droplet: droplet.name, url: `http://${droplet.ipv4}${result.path}/`, bundleBytes: bytes, upload };
  });
}

/** The files the agent asked for (null: it answered the deploy before asking, with an error say). */
async function filesNeeded(manifest: BundleFile[], need: Promise<number[]>, pending: PendingRequest<DeployResult>): Promise<string[] | null> {
  const asked = await Promise.race([need, pending.result.then(() => null, () => null)]);
  if (asked === null) return null;
  return asked.map((i) => {
    const file = manifest[i];
    if (!file) throw new PlumbError('AGENT_PROTOCOL', `the agent asked for file ${i} of a list of ${manifest.length}`, 'plumb and its agent should be the same version');
    return file.path;
  });
}

/** Streams the bundle of `info.files` with backpressure, then `upload-end`; returns the bytes sent. */
async function sendBundle(ctx: Context, connection: AgentConnection, pending: PendingRequest<DeployResult>, dir: string, info: BundleInfo, droplet: string, totalFiles: number, settled: () => boolean, packed?: Packed): Promise<number> {
  const count = info.files.length === totalFiles ? `${totalFiles} file${totalFiles === 1 ? '' : 's'}` : `${info.files.length} of ${totalFiles} files`;
  ctx.progress({ step: `uploading ${count} to ${droplet}` });
  let bytes = 0;
  let shown = 0;
  if (info.files.length > 0) {
    for await (const chunk of packed ?? packBundle(dir, info)) {
      if (settled()) break;
      bytes += (chunk as Buffer).length;
      await connection.sendBinary(chunk as Buffer);
      // Bytes sent, for bundles big enough to take a while: one line per MiB at most.
      if (bytes - shown >= 1024 * 1024) {
        shown = bytes;
        ctx.progress({ step: `uploading ${count} to ${droplet}`, detail: `${(bytes / 1024 / 1024).toFixed(0)} MiB sent` });
      }
    }
  }
  if (!settled()) connection.notify({ type: 'upload-end', id: pending.id, bytes });
  return bytes;
}
