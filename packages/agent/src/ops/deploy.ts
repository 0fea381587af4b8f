import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import { ApiName, DEFAULT_WORKERS, ReleaseId, DRAIN_TIMEOUT_MS, ENTRYPOINTS, HEALTH_TIMEOUT_MS, RELEASES_KEPT, requestedSparePolicy, type DeployRequest, type DeployResult, PlumbError } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { crashPoint } from '../crash-point.js';
import { receiveDelta, removeManifest, saveManifest, type IncomingBundle, type ReleaseFiles } from '../bundle/delta.js';
import { extractBundle } from '../bundle/extract.js';
import { log } from '../log.js';
import { events } from '../monitor/events.js';
import { liveEnv, liveRelease, sparePolicyOf, type AgentState, type ApiRecord } from '../state.js';
import { ensureApiAccount, openRelease, removeApiUser, type ApiAccount } from '../system/api-account.js';
import { layout } from '../system/layout.js';
import { apiLock, StepError, type OpContext } from './context.js';
import { installPackages, reposFor } from './packages.js';
import { pruneAfterAnswer } from './prune.js';
import { rollout } from './rollout.js';
import { nextSpareAfterAnswer } from './spare-decide.js';
import { fitOf, hasSpare, rolloutTook, stopSpare } from './spare.js';
import { ensureUnit, removeUnit } from './workers.js';

function newReleaseId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

/** The settings a deploy runs with: what the request says, else what the API had, else the defaults. */
export function settingsFor(req: DeployRequest, previous: ApiRecord | undefined) {
  return {
    path: req.path ?? previous?.path ?? `/${req.name}`,
    env: req.env ?? (previous ? liveEnv(previous) : {}),
    workers: req.workers ?? (previous?.workers.length || DEFAULT_WORKERS),
    healthPath: req.healthPath !== undefined ? req.healthPath : (previous?.healthPath ?? null),
    healthTimeoutMs: req.healthTimeoutMs ?? previous?.healthTimeoutMs ?? HEALTH_TIMEOUT_MS,
    memoryMax: req.memoryMax !== undefined ? req.memoryMax : (previous?.memoryMax ?? null),
    keepReleases: req.keepReleases ?? previous?.keepReleases ?? RELEASES_KEPT,
    drainTimeoutMs: req.drainTimeoutMs ?? previous?.drainTimeoutMs ?? DRAIN_TIMEOUT_MS,
    spare: req.spare !== undefined ? requestedSparePolicy(req.spare) : previous ? sparePolicyOf(previous) : 'auto',
    repo: req.packages?.repo ?? previous?.repo ?? null,
    binaryRepo: req.packages?.binaryRepo ?? previous?.binaryRepo ?? null,
  };
}

/** Refuses what would clash with another API before a byte of the bundle is written. */
export function checkDeploy(name: string, path: string, state: AgentState): void {
  const clash = Object.values(state.apis).find((a) => a.name !== name && a.path === path);
  if (clash) throw new StepError('PATH_TAKEN', 'checking the request', `the path ${path} is already served by the API "${clash.name}"`, [], 'choose another --path, or remove that API first');
}

/**
 * A release: extract the bundle into its own directory, then roll it out (rollout.ts). Running it
 * again with the same name updates the API; a second deploy of the same API waits for the first.
 */
export async function deploy(req: DeployRequest, bundle: IncomingBundle, ctx: OpContext): Promise<DeployResult> {
  return ctx.locks.with(apiLock(req.name), () => deployLocked(req, bundle, ctx), () => ctx.progress('waiting for another deploy of this API to finish'));
}

async function deployLocked(req: DeployRequest, bundle: IncomingBundle, ctx: OpContext): Promise<DeployResult> {
  const started = Date.now();
  const previous = ctx.state.get().apis[req.name];
  const settings = settingsFor(req, previous);
  checkDeploy(req.name, settings.path, ctx.state.get());
  const release = newReleaseId();
  const releaseDir = layout.releaseDir(req.name, release);

  ctx.progress('receiving the bundle');
  // A `remove --keep-files` leaves the API's directory (data/ with it) and its user: a failed
  // deploy of that name takes away only what it made itself.
  const keptFiles = !previous && (await access(layout.apiDir(req.name)).then(() => true, () => false));
  const made: DeployMarker = { release, newApi: !previous, keptFiles };
  const forgetIfNew = () => forgetMade(req.name, made);
  // Written first: an agent killed from here on removes what this deploy made when it starts again.
  await writeMarker(req.name, made);
  try {
    return await extractAndRoll(req, bundle, { settings, previous, release, releaseDir, forgetIfNew, started }, ctx);
  } finally {
    await rm(layout.deployMarker(req.name), { force: true });
  }
}

interface DeployRun {
  settings: ReturnType<typeof settingsFor>;
  previous: ApiRecord | undefined;
  release: string;
  releaseDir: string;
  forgetIfNew: () => Promise<void>;
  started: number;
}

async function extractAndRoll(req: DeployRequest, bundle: IncomingBundle, run: DeployRun, ctx: OpContext): Promise<DeployResult> {
  const { settings, previous, release, releaseDir, forgetIfNew, started } = run;
  let extracted: ReleaseFiles;
  let account: ApiAccount;
  try {
    account = await ensureApiAccount(req.name);
    extracted = req.manifest
      ? await receiveDelta(req.name, req.manifest, keptReleases(previous), bundle, releaseDir, (step) => ctx.progress(step))
      : { ...(await extractBundle(bundle.data, releaseDir)), reused: 0 };
    await saveManifest(req.name, release, extracted.written)
      .then(() => openRelease(releaseDir, account))
      .catch(async (err: unknown) => {
        await rm(releaseDir, { recursive: true, force: true });
        await removeManifest(req.name, release);
        throw err;
      });
  } catch (err) {
    await forgetIfNew();
    throw diskFull(err);
  }
  crashPoint('bundle-received');
  const entrypoint = await findEntrypoint(releaseDir);
  try {
    if (!entrypoint) throw new StepError('NO_ENTRYPOINT', 'checking the bundle', 'the bundle has no plumber.R or entrypoint.R at its top', [], 'plumb deploy needs the directory that holds plumber.R');
    // Before any worker of the new release starts: it loads its packages as it starts.
    // --no-deps: the live release's packages, as they are.
    const liveLibrary = previous ? liveRelease(previous)?.library : null;
    const installed = req.packages ? await installPackages(req.name, req.packages, reposFor(settings, ctx.state.get()), liveLibrary, ctx) : null;
    const packages = installed?.report ?? null;
    const library = installed ? installed.library : liveLibrary;
    const created = { id: release, createdAt: new Date().toISOString(), files: extracted.files, bytes: extracted.bytes, env: settings.env, packages: req.packages?.needs.map((n) => n.name) ?? [], library, packagesSpec: req.packages ?? null };
    const fit = fitOf(created, settings.memoryMax);
    // --no-spare: the spare goes now (a rollback, scale or restart leaves it: it may fit the next deploy).
    if (settings.spare === 'never') await stopSpare(req.name, { forget: true });
    const { ports, drain, startMs, spareUsed, drained } = await rollout(
      { name: req.name, release, env: settings.env, secrets: previous?.secrets ?? {}, library, workers: settings.workers, healthPath: settings.healthPath, healthTimeoutMs: settings.healthTimeoutMs, memoryMax: settings.memoryMax, drainTimeoutMs: settings.drainTimeoutMs, wait: req.wait, account, ...(settings.spare === 'never' ? {} : { spare: fit }) },
      (ports) => ({
        name: req.name,
        path: settings.path,
        entrypoint,
        releases: [...(previous?.releases ?? []), created],
        current: release,
        workers: ports.map((port) => ({ port, release })),
        healthPath: settings.healthPath,
        healthTimeoutMs: settings.healthTimeoutMs,
        memoryMax: settings.memoryMax,
        keepReleases: settings.keepReleases,
        spare: settings.spare === 'always',
        sparePolicy: settings.spare,
        secrets: previous?.secrets ?? {},
        repo: settings.repo,
        binaryRepo: settings.binaryRepo,
        deployedAt: new Date().toISOString(),
        group: req.group ? { ...req.group, kind: req.group.kind ?? 'deploy', from: previous?.current ?? null, to: release } : (previous?.group ?? null),
      }),
      req.forward,
      ctx,
    );
    // Old releases go behind the answer (prune.ts), queued before the spare on the API's lock.
    pruneAfterAnswer(req.name, ctx);
    // --no-spare forgot the API's measurements: none kept for it meanwhile.
    if (settings.spare !== 'never') rolloutTook(req.name, startMs, spareUsed, ports.length);
    nextSpareAfterAnswer(req.name, release, fit, ctx, drained);
    log.info('deployed', { api: req.name, release, took_ms: Date.now() - started });
    events.record({ kind: 'deploy', api: req.name, detail: `release ${release} live on port${ports.length > 1 ? 's' : ''} ${ports.join(', ')}` });
    return { name: req.name, path: settings.path, release, entrypoint, ports, forward: ctx.state.get().forward === req.name, files: extracted.files, bytes: extracted.bytes, reusedFiles: extracted.reused, packages, tookMs: Date.now() - started, drain };
  } catch (err) {
    log.warn('deploy failed', { api: req.name, release, error: (err as Error).message });
    const now = ctx.state.get().apis[req.name];
    // Failed before the switch: the unit goes back to the live workers' settings (a failed --memory
    // change rewrote it), so their restarts and the next spare run as they did.
    if (previous && now?.current !== release) await ensureUnit(req.name, previous.memoryMax).catch((e: Error) => log.warn('could not restore the unit', { api: req.name, error: e.message }));
    // The spare may have been handed the release that failed, before or after the switch: whatever
    // is live gets its spare decided again (once: a deploy just before may have queued it already).
    if (now && settings.spare !== 'never' && !hasSpare(req.name)) nextSpareAfterAnswer(req.name, now.current, fitOf(liveRelease(now), now.memoryMax), ctx);
    if (now?.current !== release) {
      await rm(releaseDir, { recursive: true, force: true });
      await removeManifest(req.name, release);
      await forgetIfNew();
    }
    throw err;
  }
}

/** What a deploy under way made, kept in layout.deployMarker(NAME) until it ends. */
const DeployMarker = z.object({
  release: ReleaseId,
  /** The state had no such API: the unit, the directory and the user are this deploy's. */
  newApi: z.boolean(),
  /** ...except the directory and the user, when `remove --keep-files` left them. */
  keptFiles: z.boolean(),
});
type DeployMarker = z.infer<typeof DeployMarker>;

async function writeMarker(name: string, made: DeployMarker): Promise<void> {
  await mkdir(layout.deployMarkersDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(layout.deployMarker(name), JSON.stringify(made));
}

/** Takes away what a deploy of a new API made (its unit; its directory and user unless they were kept). */
async function forgetMade(name: string, made: DeployMarker): Promise<void> {
  if (!made.newApi) return;
  await removeUnit(name);
  if (made.keptFiles) return;
  await rm(layout.apiDir(name), { recursive: true, force: true });
  await removeApiUser(name);
}

/**
 * At start: deploys an agent killed in the middle left. The release each was making goes unless
 * the state lists it (the switch happened), and a new API the state does not know goes as a
 * failed deploy of it would have gone. Returns what was cleaned up, for the log.
 */
export async function forgetCutDeploys(state: AgentState): Promise<string[]> {
  const cleaned: string[] = [];
  for (const file of await readdir(layout.deployMarkersDir).catch(() => [] as string[])) {
    const name = file.replace(/\.json$/, '');
    const marker = layout.deployMarker(name);
    const made = ApiName.safeParse(name).success ? DeployMarker.safeParse(JSON.parse(await readFile(marker, 'utf8').catch(() => 'null'))) : undefined;
    const api = state.apis[name];
    if (made?.success && !api?.releases.some((r) => r.id === made.data.release)) {
      await rm(layout.releaseDir(name, made.data.release), { recursive: true, force: true });
      await removeManifest(name, made.data.release);
      if (!api) await forgetMade(name, made.data);
      cleaned.push(`${name} release ${made.data.release}`);
    }
    await rm(path.join(layout.deployMarkersDir, file), { force: true });
  }
  return cleaned;
}

/** The API's releases a deploy may take files from: the live one first, then the newest. */
function keptReleases(api: ApiRecord | undefined): string[] {
  if (!api) return [];
  return [api.current, ...api.releases.map((r) => r.id).filter((id) => id !== api.current).reverse()];
}

/** plumber's own rule: entrypoint.R before plumber.R, any letter case. */
async function findEntrypoint(releaseDir: string): Promise<(typeof ENTRYPOINTS)[number] | undefined> {
  const files = (await readdir(releaseDir)).map((f) => f.toLowerCase());
  return ENTRYPOINTS.find((e) => files.includes(e.toLowerCase()));
}

/** ENOSPC (or a quota) while the release was written: what happened and what to do, not a bare errno. */
function diskFull(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  return new PlumbError('DISK_FULL', `the droplet's disk filled up while the release was written (${(err as Error).message}); nothing of it was kept and the live release is untouched`, 'free space on the droplet (fewer kept releases: plumb deploy --keep N) or resize it');
}
