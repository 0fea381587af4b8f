import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { chown, mkdir, readdir, rm } from 'node:fs/promises';
import { DRAIN_MS, ENTRYPOINTS, FAILED_DEPLOY_LOG_LINES, RELEASES_KEPT, type DeployRequest, type DeployResult } from '@plumb/shared';
import { extractBundle } from '../bundle/extract.js';
import { log } from '../log.js';
import { renderNginx } from '../render/nginx.js';
import type { ApiRecord, AgentState } from '../state.js';
import { lastLines } from '../system/journal.js';
import { layout } from '../system/layout.js';
import { applyNginx } from '../system/nginx.js';
import * as systemd from '../system/systemd.js';
import { apiLock, SHARED, StepError, type OpContext } from './context.js';
import { freePorts, waitHealthy } from './health.js';
import { nginxModel } from './nginx-model.js';
import { ensureUnit, pointCurrent, removeUnit, retireWorker, startWorker } from './workers.js';

/** Ports promised to deploys still in progress, so two deploys never pick the same one. */
const reservedPorts = new Set<number>();

function newReleaseId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

/** Refuses what would clash with another API before a byte of the bundle is written. */
export function checkDeploy(req: DeployRequest, state: AgentState): void {
  const clash = Object.values(state.apis).find((a) => a.name !== req.name && a.path === req.path);
  if (clash) throw new StepError('PATH_TAKEN', 'checking the request', `the path ${req.path} is already served by the API "${clash.name}"`, [], 'choose another --path, or remove that API first');
}

/**
 * A release: extract, start new workers next to the old ones, wait until they answer, switch
 * nginx, and only then stop the old workers. Anything failing before the switch leaves the
 * previous release serving and nginx untouched.
 */
export async function deploy(req: DeployRequest, bundle: AsyncIterable<Buffer>, ctx: OpContext): Promise<DeployResult> {
  return ctx.locks.with(apiLock(req.name), () => deployLocked(req, bundle, ctx), () => ctx.progress('waiting for another deploy of this API to finish'));
}

async function deployLocked(req: DeployRequest, bundle: AsyncIterable<Buffer>, ctx: OpContext): Promise<DeployResult> {
  const started = Date.now();
  checkDeploy(req, ctx.state.get());
  const previous = ctx.state.get().apis[req.name];
  const release = newReleaseId();
  const releaseDir = layout.releaseDir(req.name, release);

  ctx.progress('receiving the bundle');
  await mkdir(layout.releasesDir(req.name), { recursive: true, mode: 0o755 });
  const data = layout.dataDir(req.name);
  await mkdir(data, { recursive: true, mode: 0o755 });
  await chownToPlumber(data);
  let extracted;
  try {
    extracted = await extractBundle(bundle, releaseDir);
  } catch (err) {
    if (!previous) await rm(layout.apiDir(req.name), { recursive: true, force: true });
    throw err;
  }
  const entrypoint = await findEntrypoint(releaseDir);
  if (!entrypoint) {
    await rm(releaseDir, { recursive: true, force: true });
    throw new StepError('NO_ENTRYPOINT', 'checking the bundle', 'the bundle has no plumber.R or entrypoint.R at its top', [], 'plumb deploy needs the directory that holds plumber.R');
  }

  ctx.progress('starting R', `${req.workers} worker${req.workers > 1 ? 's' : ''}`);
  const unitIsNew = await ensureUnit(req.name).then(() => !previous);
  const taken = new Set([...reservedPorts, ...Object.values(ctx.state.get().apis).flatMap((a) => a.workers.map((w) => w.port))]);
  const ports = await freePorts(req.workers, taken);
  ports.forEach((p) => reservedPorts.add(p));
  try {
    for (const port of ports) await startWorker(req.name, port, releaseDir, req.env);
    ctx.progress('waiting for the API to answer');
    const outcomes = await Promise.all(ports.map((port) => waitHealthy(layout.instanceUnit(req.name, port), port, req.healthPath, req.healthTimeoutMs)));
    const failed = outcomes.findIndex((o) => !o.ok);
    if (failed >= 0) {
      const outcome = outcomes[failed];
      const port = ports[failed] ?? 0;
      const lines = await lastLines(layout.instanceUnit(req.name, port), FAILED_DEPLOY_LOG_LINES);
      const detail = outcome && !outcome.ok ? outcome.detail : 'unknown';
      throw new StepError('HEALTH_CHECK_FAILED', 'health check', `the new release did not come up: ${detail}`, lines, previous ? 'the previous release is still serving' : 'nothing was changed; fix the API and deploy again');
    }

    ctx.progress('switching nginx to the new release');
    const before = previous?.workers ?? [];
    await ctx.locks.with(SHARED, async () => {
      const next: ApiRecord = {
        name: req.name,
        path: req.path,
        entrypoint,
        releases: [...(previous?.releases ?? []), { id: release, createdAt: new Date().toISOString(), files: extracted.files, bytes: extracted.bytes }],
        current: release,
        workers: ports.map((port) => ({ port, release })),
        healthPath: req.healthPath,
        deployedAt: new Date().toISOString(),
      };
      const state = ctx.state.get();
      const candidate: AgentState = { ...state, apis: { ...state.apis, [req.name]: next }, forward: req.forward ? req.name : state.forward };
      await applyNginx(renderNginx(nginxModel(candidate)));
      await ctx.state.update(() => candidate);
    });
    for (const port of ports) await systemd.enable(layout.instanceUnit(req.name, port));
    await pointCurrent(req.name, releaseDir);

    if (before.length > 0) {
      ctx.progress('stopping the previous release', `after ${DRAIN_MS / 1000} s for requests in flight`);
      await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
      for (const worker of before) await retireWorker(req.name, worker.port);
    }
    await pruneReleases(req.name, ctx);
    log.info('deployed', { api: req.name, release, took_ms: Date.now() - started });
    return { name: req.name, path: req.path, release, entrypoint, ports, forward: ctx.state.get().forward === req.name, files: extracted.files, bytes: extracted.bytes, tookMs: Date.now() - started };
  } catch (err) {
    log.warn('deploy failed', { api: req.name, release, error: (err as Error).message });
    const live = ctx.state.get().apis[req.name];
    const newIsLive = live?.current === release;
    if (!newIsLive) {
      for (const port of ports) await retireWorker(req.name, port);
      await rm(releaseDir, { recursive: true, force: true });
      if (unitIsNew) {
        await removeUnit(req.name);
        await rm(layout.apiDir(req.name), { recursive: true, force: true });
      }
    }
    throw err;
  } finally {
    ports.forEach((p) => reservedPorts.delete(p));
  }
}

/** plumber's own rule: entrypoint.R before plumber.R, any letter case. */
async function findEntrypoint(releaseDir: string): Promise<(typeof ENTRYPOINTS)[number] | undefined> {
  const files = (await readdir(releaseDir)).map((f) => f.toLowerCase());
  return ENTRYPOINTS.find((e) => files.includes(e.toLowerCase()));
}

/** Keeps the last RELEASES_KEPT releases (always the live one); deletes older ones. */
async function pruneReleases(name: string, ctx: OpContext): Promise<void> {
  await ctx.locks.with(SHARED, async () => {
    const api = ctx.state.get().apis[name];
    if (!api || api.releases.length <= RELEASES_KEPT) return;
    const keep = api.releases.slice(-RELEASES_KEPT);
    if (!keep.some((r) => r.id === api.current)) keep.unshift(api.releases.find((r) => r.id === api.current)!);
    const drop = api.releases.filter((r) => !keep.includes(r));
    await ctx.state.update((s) => ({ ...s, apis: { ...s.apis, [name]: { ...api, releases: keep } } }));
    for (const r of drop) await rm(layout.releaseDir(name, r.id), { recursive: true, force: true });
  });
}

async function chownToPlumber(dir: string): Promise<void> {
  const id = await execa('id', ['-u', 'plumber'], { reject: false });
  const gid = await execa('id', ['-g', 'plumber'], { reject: false });
  if (id.exitCode === 0 && gid.exitCode === 0) await chown(dir, Number(id.stdout), Number(gid.stdout));
}
