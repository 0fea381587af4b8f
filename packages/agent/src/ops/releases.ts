import { DEFAULT_WORKERS, PlumbError, type GroupChange, type ReleasesResult, type RollbackResult, type ScaleResult } from '@plumb/shared';
import { log } from '../log.js';
import { events } from '../monitor/events.js';
import { apiLock, type OpContext } from './context.js';
import { liveRelease, sparePolicyOf, type ApiRecord } from '../state.js';
import { rollout, type RolloutOutcome } from './rollout.js';
import { requireApi } from './routing.js';
import { hasSpare, keepSpare, stopSpare } from './spare.js';
import { digestOf } from './status.js';

/** An API's releases on disk, oldest first. */
export async function releases(name: string, ctx: OpContext): Promise<ReleasesResult> {
  const api = requireApi(ctx.state.get(), name);
  const digests = await Promise.all(api.releases.map((r) => digestOf(name, r.id, r.env)));
  return { name, releases: api.releases.map((r, i) => ({ id: r.id, createdAt: r.createdAt, files: r.files, bytes: r.bytes, live: r.id === api.current, digest: digests[i] ?? null })) };
}

/** Back to an earlier release (the one before the live one unless `to`), through the same gate as a deploy. */
export async function rollback(name: string, to: string | null, wait: boolean, group: GroupChange | undefined, ctx: OpContext): Promise<RollbackResult> {
  return ctx.locks.with(apiLock(name), async () => {
    const started = Date.now();
    const api = requireApi(ctx.state.get(), name);
    const index = api.releases.findIndex((r) => r.id === api.current);
    const target = to === null ? api.releases[index - 1] : api.releases.find((r) => r.id === to);
    if (!target) {
      throw new PlumbError(
        'NO_SUCH_RELEASE',
        to === null ? `${name} has no release before the live one (${api.current})` : `${name} has no release ${to}`,
        `see \`plumb releases ${name}\``,
      );
    }
    if (target.id === api.current) throw new PlumbError('ALREADY_LIVE', `release ${target.id} is already live`);
    const { drain } = await rollout(
      { ...liveSettings(api), release: target.id, env: target.env, secrets: api.secrets, library: target.library, workers: api.workers.length || DEFAULT_WORKERS, wait },
      (ports) => ({
        ...api,
        current: target.id,
        workers: ports.map((port) => ({ port, release: target.id })),
        deployedAt: new Date().toISOString(),
        group: group ? { ...group, kind: 'rollback', from: api.current, to: target.id } : api.group,
      }),
      undefined,
      ctx,
    );
    log.info('rolled back', { api: name, from: api.current, to: target.id });
    events.record({ kind: 'rollback', api: name, detail: `from release ${api.current} to ${target.id}` });
    return { name, from: api.current, to: target.id, tookMs: Date.now() - started, drain };
  });
}

/** Another number of R workers for the live release, with no gap: a new set starts, then the old stops. */
export async function scale(name: string, workers: number, wait: boolean, ctx: OpContext): Promise<ScaleResult> {
  return ctx.locks.with(apiLock(name), async () => {
    const started = Date.now();
    const api = requireApi(ctx.state.get(), name);
    const { ports, drain } = await replaceWorkers(api, workers, wait, ctx);
    // auto keeps no spare for several workers (spare-policy.ts): one kept from one worker goes, and
    // plumb status says why. Scaled back to one, the next deploy decides.
    if (sparePolicyOf(api) === 'auto' && workers > 1 && hasSpare(name) && !(await keepSpare(name, 'auto', ports)).keep) await stopSpare(name);
    return { name, from: api.workers.length, to: workers, tookMs: Date.now() - started, drain };
  });
}

/**
 * A fresh set of `workers` workers for the live release (scale, restart, secrets), through the
 * same gate and switch as a deploy. `secrets`: the API's secrets from now on, saved only once
 * the new workers answered (a secret that breaks the API leaves the old ones serving).
 */
export function replaceWorkers(api: ApiRecord, workers: number, wait: boolean, ctx: OpContext, secrets = api.secrets): Promise<RolloutOutcome> {
  const live = liveRelease(api);
  return rollout(
    { ...liveSettings(api), release: api.current, env: live?.env ?? {}, secrets, library: live?.library, workers, wait },
    (ports) => ({ ...api, secrets, workers: ports.map((port) => ({ port, release: api.current })) }),
    undefined,
    ctx,
  );
}

/** The API's own settings a rollout keeps. */
function liveSettings(api: ApiRecord) {
  return { name: api.name, healthPath: api.healthPath, healthTimeoutMs: api.healthTimeoutMs, memoryMax: api.memoryMax, drainTimeoutMs: api.drainTimeoutMs };
}
