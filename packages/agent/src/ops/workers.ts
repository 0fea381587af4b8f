import { mkdir, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic, writeIfChanged } from '@plumb/shared/files';
import { renderApiUnit, renderInstanceEnv } from '../render/systemd.js';
import { RUNNER_R } from '../render/runner.js';
import { layout } from '../system/layout.js';
import * as systemd from '../system/systemd.js';

/**
 * The R workers of an API: a systemd template unit `plumber-NAME@.service` whose instances are
 * ports. Each instance reads its own root-only environment file (release dir and --env values),
 * so the unit file itself holds no secret and an old worker keeps its release's settings.
 */

/** Writes the runner and the unit if they differ from what is on disk; returns whether systemd must reload. */
export async function ensureUnit(name: string, memoryMax: string | null): Promise<boolean> {
  let changed = await writeIfChanged(layout.runner, RUNNER_R, 0o644);
  changed = (await writeIfChanged(layout.unitFile(name), renderApiUnit(name, { memoryMax }), 0o644)) || changed;
  if (changed) await systemd.daemonReload();
  return changed;
}

export async function removeUnit(name: string): Promise<void> {
  await rm(layout.unitFile(name), { force: true });
  await systemd.daemonReload();
}

/** `library`: the path of the release's R library generation (see renderInstanceEnv). */
export async function startWorker(name: string, port: number, releaseDir: string, env: Record<string, string>, secrets: Record<string, string>, library: string | null | undefined): Promise<void> {
  await writeWorkerEnv(name, port, releaseDir, env, secrets, library);
  await systemd.start(layout.instanceUnit(name, port));
}

/** The worker's env file: what systemd gives it at every (re)start, and what a warm spare is handed. */
export async function writeWorkerEnv(name: string, port: number, releaseDir: string, env: Record<string, string>, secrets: Record<string, string>, library: string | null | undefined): Promise<void> {
  await mkdir(layout.instancesDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(layout.instanceEnvFile(name, port), renderInstanceEnv(releaseDir, env, library, secrets), 0o600);
}

/** Stops a worker and forgets it: not started at boot any more, its environment file gone. */
export async function retireWorker(name: string, port: number): Promise<void> {
  await systemd.stopAndDisable(layout.instanceUnit(name, port));
  await rm(layout.instanceEnvFile(name, port), { force: true });
}

/** Points /var/plumber/NAME/current at a release, atomically (a new link renamed over the old). */
export async function pointCurrent(name: string, releaseDir: string): Promise<void> {
  const link = layout.currentLink(name);
  const tmp = `${link}.new`;
  await rm(tmp, { force: true });
  await symlink(path.relative(path.dirname(link), releaseDir), tmp);
  await rename(tmp, link);
}
