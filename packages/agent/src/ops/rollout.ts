import { allDone, FAILED_DEPLOY_LOG_LINES, type DrainReport } from '@plumb/shared';
import { crashPoint } from '../crash-point.js';
import type { ApiRecord } from '../state.js';
import { ensureApiAccount, openRelease, type ApiAccount } from '../system/api-account.js';
import { lastLines } from '../system/journal.js';
import { layout } from '../system/layout.js';
import * as systemd from '../system/systemd.js';
import { StepError, type OpContext } from './context.js';
import { drainWorkers } from './drain.js';
import { freePorts, waitHealthy } from './health.js';
import { libraryPath } from './packages.js';
import { changeRouting, freeFrontPort } from './routing.js';
import { startSpare, stopSpare, sparePorts, takeSpare, type SpareFit, type SpareVars } from './spare.js';
import { ensureUnit, pointCurrent, retireWorker, startWorker, writeWorkerEnv } from './workers.js';

/** Ports promised to rollouts still in progress, so two never pick the same one. */
const reservedPorts = new Set<number>();

/** Ports no new worker or spare may take: promised, a worker's (live or draining), a spare's. */
const takenPorts = (ctx: Pick<OpContext, 'state'>) => new Set([...reservedPorts, ...sparePorts(), ...Object.values(ctx.state.get().apis).flatMap((a) => [...a.workers, ...a.draining].map((w) => w.port))]);

/** The pick in progress: picks run one at a time. */
let picking: Promise<unknown> = Promise.resolve();

/**
 * `count` free ports, already promised (in reservedPorts) when they are returned: the caller
 * releases them. Picks run one after another: freePorts tries a bind on each candidate, and two
 * rollouts picking at once (deploys of two APIs) both got the lowest free port; one worker then
 * failed to bind, and its health gate, knocking on the port, passed on the other API's worker.
 */
export async function pickPorts(count: number, ctx: Pick<OpContext, 'state'>): Promise<number[]> {
  const pick = picking.then(async () => {
    const ports = await freePorts(count, takenPorts(ctx));
    ports.forEach((p) => reservedPorts.add(p));
    return ports;
  });
  picking = pick.catch(() => undefined);
  return pick;
}

/**
 * After a deploy (or a secrets change): the API's next warm spare, on a port of its own, loading
 * what `fit` says (the live release) with `vars` (its --env and the API's secrets). A spare that
 * cannot start is no failure: the next deploy starts cold.
 */
export async function startNextSpare(name: string, fit: SpareFit, vars: SpareVars, ctx: OpContext): Promise<void> {
  // A spare of an earlier deploy (two deploys queued on the API's lock) goes first: one per API.
  await stopSpare(name);
  // pickPorts gives as many as asked, or throws.
  const [port] = (await pickPorts(1, ctx)) as [number];
  try {
    await startSpare(name, port, fit, vars);
  } finally {
    reservedPorts.delete(port);
  }
}


export interface RolloutTarget {
  name: string;
  release: string;
  /** The release's --env. */
  env: Record<string, string>;
  /** The API's secrets, over the --env of the same name; kept apart in the env file (renderInstanceEnv). */
  secrets: Record<string, string>;
  /** The release's R library generation (state.ts Release.library). */
  library: string | null | undefined;
  workers: number;
  healthPath: string | null;
  healthTimeoutMs: number;
  memoryMax: string | null;
  drainTimeoutMs: number;
  /** Answer only once the previous workers have drained and stopped. */
  wait: boolean;
  /** A deploy: what the API's warm spare must have loaded to serve as one of the new workers (ops/spare.ts). */
  spare?: SpareFit;
  /** The API's account, when the caller has just made sure of it (a deploy). */
  account?: ApiAccount;
}

/** The API as the rollout leaves it; the rollout itself fills in where traffic comes from and what drains. */
export type NextApi = Omit<ApiRecord, 'frontPort' | 'draining' | 'drainTimeoutMs'>;

export interface RolloutOutcome {
  ports: number[];
  drain: DrainReport;
  /** From starting the workers (cold, or the spare's handover) until all answered, in ms. */
  startMs: number;
  /** A spare took the release. */
  spareUsed: boolean;
  /** Settles once the previous workers have stopped (never fails). */
  drained: Promise<unknown>;
}

/**
 * How every change of what an API runs happens (deploy, rollback, scale, restart): new workers
 * start on fresh ports next to the live ones and must pass the health gate; then the API's
 * nftables map switches new connections to them (nginx is not reloaded, so no client connection
 * is closed), and the old workers drain: each stops once it has no request in flight, at the
 * latest after the API's drain timeout. The answer comes right after the switch unless `wait`.
 * A failure before the switch stops the new workers and leaves the live ones serving.
 */
export async function rollout(target: RolloutTarget, next: (ports: number[]) => NextApi, forward: boolean | undefined, ctx: OpContext): Promise<RolloutOutcome> {
  const { name } = target;
  const releaseDir = layout.releaseDir(name, target.release);
  ctx.progress('starting R', `${target.workers} worker${target.workers > 1 ? 's' : ''}`);
  // A release from before APIs could write beside their code (rollback) is opened first; a
  // deploy's own is open already and brings its account (getent is a process on the way to R).
  await openRelease(releaseDir, target.account ?? (await ensureApiAccount(name)));
  const unitChanged = await ensureUnit(name, target.memoryMax);
  // A unit changed since the spare started would not be the worker a cold start makes.
  const taken = target.spare ? await takeSpare(name, target.spare, { dir: releaseDir, env: target.env, secrets: target.secrets }, unitChanged) : undefined;
  if (taken?.why) ctx.progress('starting R', `cold: the warm spare was not used (${taken.why})`);
  const spare = taken?.spare;
  const startedAt = Date.now();
  const ports: number[] = [];
  let spareUsed = false;
  // Every port this rollout holds, a spare's lost at its handover too: no cold worker may take it
  // while its unit (restarted by systemd) is being stopped.
  const reserved: number[] = [];
  const reserve = (more: number[]) => {
    reserved.push(...more);
    more.forEach((p) => reservedPorts.add(p));
  };
  let enabling: Promise<unknown> = Promise.resolve();
  try {
    const library = target.library === undefined ? undefined : libraryPath(name, target.library);
    if (spare) {
      reserve([spare.port]);
      ports.push(spare.port);
      await writeWorkerEnv(name, spare.port, releaseDir, target.env, target.secrets, library);
      const lost = await spare.handOver();
      spareUsed = lost === null;
      if (lost === null) ctx.progress('starting R', `the warm spare on port ${spare.port} takes the release${spare.loadingWaitMs >= 100 ? ` (after ${(spare.loadingWaitMs / 1000).toFixed(1)} s waiting for it to finish loading)` : ''}`);
      else {
        ctx.progress('starting R', `cold: the warm spare was not used (${lost})`);
        // systemd restarts it cold from the env file just written, but the health gate would count
        // that restart as a failed start: a worker of its own instead.
        ports.pop();
        await retireWorker(name, spare.port);
      }
    }
    const cold = await pickPorts(target.workers - ports.length, ctx);
    reserve(cold);
    ports.push(...cold);
    await allDone(cold.map((port) => startWorker(name, port, releaseDir, target.env, target.secrets, library)));
    ctx.progress('waiting for the API to answer');
    // Linked while R loads, not after the switch, where each systemctl held up the answer; a worker
    // that fails the gate is unlinked with the rest (retireWorker). The failure is kept until
    // awaited: a rejection left unhandled meanwhile would end the agent.
    enabling = allDone(ports.map((port) => systemd.enableAtBoot(layout.instanceUnit(name, port)))).then(() => undefined, (err: unknown) => err);
    const outcomes = await Promise.all(ports.map((port) => waitHealthy(layout.instanceUnit(name, port), port, target.healthPath, target.healthTimeoutMs)));
    const failed = outcomes.findIndex((o) => !o.ok);
    if (failed >= 0) {
      const outcome = outcomes[failed];
      const lines = await lastLines(layout.instanceUnit(name, ports[failed] ?? 0), FAILED_DEPLOY_LOG_LINES, startedAt);
      throw new StepError('HEALTH_CHECK_FAILED', 'health check', `the new release did not come up: ${outcome && !outcome.ok ? outcome.detail : 'unknown'}`, lines, ctx.state.get().apis[name] ? 'the previous release is still serving' : 'nothing was changed; fix the API and deploy again');
    }
    const startMs = Date.now() - startedAt;
    const notEnabled = await enabling;
    if (notEnabled) throw notEnabled;

    ctx.progress('switching traffic to the new workers');
    const before = ctx.state.get().apis[name]?.workers ?? [];
    const until = new Date(Date.now() + target.drainTimeoutMs).toISOString();
    const retiring = before.map((w) => ({ ...w, until }));
    await changeRouting(ctx, (state) => {
      const previous = state.apis[name];
      const api: ApiRecord = {
        ...next(ports),
        frontPort: previous?.frontPort ?? freeFrontPort(state),
        draining: [...(previous?.draining ?? []), ...retiring],
        drainTimeoutMs: target.drainTimeoutMs,
      };
      return { ...state, apis: { ...state.apis, [name]: api }, forward: forward ? name : state.forward };
    });
    crashPoint('state-saved');
    // From here the old workers are draining in the state: they stop whatever happens next.
    const drained = drainWorkers(name, retiring, ctx);
    await pointCurrent(name, releaseDir);
    const drain: DrainReport = { ports: before.map((w) => w.port), timeoutMs: target.drainTimeoutMs, stopped: false, cut: 0 };
    if (target.wait && retiring.length > 0) {
      ctx.progress('waiting for the previous workers to finish their requests', `at most ${target.drainTimeoutMs / 1000} s`);
      return { ports, drain: { ...drain, stopped: true, cut: await drained }, startMs, spareUsed, drained };
    }
    return { ports, drain: { ...drain, stopped: retiring.length === 0 }, startMs, spareUsed, drained: drained.catch(() => undefined) };
  } catch (err) {
    // An enable still running would link a worker back after its retireWorker had unlinked it.
    await enabling;
    await spare?.drop().catch(() => undefined);
    const live = ctx.state.get().apis[name]?.workers.map((w) => w.port) ?? [];
    for (const port of ports.filter((p) => !live.includes(p))) await retireWorker(name, port);
    throw err;
  } finally {
    reserved.forEach((p) => reservedPorts.delete(p));
  }
}
