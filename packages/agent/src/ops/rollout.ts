import { DRAIN_MS, FAILED_DEPLOY_LOG_LINES } from '@plumb/shared';
import type { ApiRecord } from '../state.js';
import { ensureApiAccount, openRelease } from '../system/api-account.js';
import { lastLines } from '../system/journal.js';
import { layout } from '../system/layout.js';
import * as systemd from '../system/systemd.js';
import { StepError, type OpContext } from './context.js';
import { freePorts, waitHealthy } from './health.js';
import { changeRouting } from './routing.js';
import { ensureUnit, pointCurrent, retireWorker, startWorker } from './workers.js';

/** Ports promised to rollouts still in progress, so two never pick the same one. */
const reservedPorts = new Set<number>();

export interface RolloutTarget {
  name: string;
  release: string;
  env: Record<string, string>;
  workers: number;
  healthPath: string | null;
  healthTimeoutMs: number;
  memoryMax: string | null;
}

/**
 * How every change of what an API runs happens (deploy, rollback, scale): new workers start on
 * fresh ports next to the live ones, must pass the health gate, then nginx switches to them with a
 * graceful reload, the old workers drain and only then stop. A failure before the switch stops
 * the new workers and leaves the live ones serving, nginx untouched.
 */
export async function rollout(target: RolloutTarget, next: (ports: number[]) => ApiRecord, forward: boolean | undefined, ctx: OpContext): Promise<number[]> {
  const { name } = target;
  const releaseDir = layout.releaseDir(name, target.release);
  ctx.progress('starting R', `${target.workers} worker${target.workers > 1 ? 's' : ''}`);
  // A release from before APIs could write beside their code (rollback) is opened first.
  await openRelease(releaseDir, await ensureApiAccount(name));
  await ensureUnit(name, target.memoryMax);
  const taken = new Set([...reservedPorts, ...Object.values(ctx.state.get().apis).flatMap((a) => a.workers.map((w) => w.port))]);
  const ports = await freePorts(target.workers, taken);
  ports.forEach((p) => reservedPorts.add(p));
  const startedAt = Date.now();
  try {
    for (const port of ports) await startWorker(name, port, releaseDir, target.env);
    ctx.progress('waiting for the API to answer');
    const outcomes = await Promise.all(ports.map((port) => waitHealthy(layout.instanceUnit(name, port), port, target.healthPath, target.healthTimeoutMs)));
    const failed = outcomes.findIndex((o) => !o.ok);
    if (failed >= 0) {
      const outcome = outcomes[failed];
      const lines = await lastLines(layout.instanceUnit(name, ports[failed] ?? 0), FAILED_DEPLOY_LOG_LINES, startedAt);
      throw new StepError('HEALTH_CHECK_FAILED', 'health check', `the new release did not come up: ${outcome && !outcome.ok ? outcome.detail : 'unknown'}`, lines, ctx.state.get().apis[name] ? 'the previous release is still serving' : 'nothing was changed; fix the API and deploy again');
    }

    ctx.progress('switching nginx to the new workers');
    const before = ctx.state.get().apis[name]?.workers ?? [];
    await changeRouting(ctx, (state) => ({ ...state, apis: { ...state.apis, [name]: next(ports) }, forward: forward ? name : state.forward }));
    try {
      for (const port of ports) await systemd.enable(layout.instanceUnit(name, port));
      await pointCurrent(name, releaseDir);
    } finally {
      // Once nginx has switched, the old workers are no longer in the state: they go whatever happens here.
      if (before.length > 0) {
        ctx.progress('stopping the previous workers', `after ${DRAIN_MS / 1000} s for requests in flight`);
        await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
        for (const worker of before) await retireWorker(name, worker.port);
      }
    }
    return ports;
  } catch (err) {
    const live = ctx.state.get().apis[name]?.workers.map((w) => w.port) ?? [];
    for (const port of ports.filter((p) => !live.includes(p))) await retireWorker(name, port);
    throw err;
  } finally {
    ports.forEach((p) => reservedPorts.delete(p));
  }
}
