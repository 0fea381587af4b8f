import { createHash } from 'node:crypto';
import { chown, mkdir, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { constants } from 'node:fs';
import { execa } from 'execa';
import { SPARE_CRASHES_ALERT, SPARE_EXPECTED_BYTES, SPARE_LOADED_POLL_MS, SPARE_LOADING_POLL_MS, SPARE_LOADING_WAIT_MS, spareCrashes, type SparePolicy } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { killAtCrashPoint } from '../crash-point.js';
import { log } from '../log.js';
import type { EventInput } from '../monitor/events.js';
import { residentBytes } from '../monitor/heartbeat.js';
import { SPARE_READY } from '../render/runner.js';
import { renderSpareEnv } from '../render/systemd.js';
import { ensureApiAccount } from '../system/api-account.js';
import { pidsThatSaid } from '../system/journal.js';
import { layout } from '../system/layout.js';
import { dropletMemory, type DropletMemory } from '../system/memory.js';
import * as systemd from '../system/systemd.js';
import type { Release } from '../state.js';
import { decideSpare, type SpareDecision } from './spare-policy.js';
import { measuredSaver, readMeasured, renderMeasured, type Measured } from './spare-measured.js';
import { retireWorker } from './workers.js';

/**
 * The warm spare (issue 14, docs/architecture.md): per API, one worker started early on a port of
 * its own, R with plumber and the live release's packages loaded, waiting on a fifo. It starts with
 * the live release's --env and the API's secrets in its env file, so R and every package it loads
 * see the environment a cold start gives from R's first instruction on. The next deploy writes that
 * worker's env file as for any worker, then hands the release directory over the fifo; the runner
 * sets it, changes into the release and serves. The process stays the worker unit
 * `plumber-NAME@PORT` it always was: systemd restarts it (cold, from the env file now written),
 * applies its memory limit, and its lines are in its journal.
 *
 * Used only when the spare loaded what the release would: the same R library generation, the same
 * packages, dpkg's database unchanged (no Debian package upgraded under it) and the same unit
 * settings; only when the release's --env and the API's secrets are those it started with; and
 * only when it never crashed (systemd restarted it). Else the spare is stopped and the release
 * starts cold, and the deploy's step says why; so it does when the spare ends between the agent
 * opening its fifo and writing to it. Kept in memory: an agent that starts again stops every
 * worker its state does not list (reconcile.ts), spares included, then decides each API's spare
 * as a deploy's answer would (spare-decide.ts resumeSpares); what auto decides by is kept on disk
 * (spare-measured.ts).
 */

/** The environment a spare starts with: the live release's --env and the API's secrets. */
export interface SpareVars {
  env: Record<string, string>;
  secrets: Record<string, string>;
}

interface Spare {
  port: number;
  /** What it loaded (keyOf). */
  key: string;
  fit: SpareFit;
  /** Digests of the --env and secrets it started with (varsKey): the values stay in the state and env files. */
  envKey: string;
  secretsKey: string;
  /** When the agent started it: its unit's journal from then on is this spare's. */
  startedAt: number;
}

const spares = new Map<string, Spare>();

const varsKey = (vars: Record<string, string>) => createHash('sha256').update(JSON.stringify(Object.entries(vars).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))).digest('hex');

/**
 * Per API: its last cold start of one worker (start until it answered), its quickest and its last
 * spare (handover until it answered: what a spare saves is measured from the quickest, what it
 * costs now by the last, so spares that grow slow end), its last spare's resident memory as it
 * was taken: what keepSpare decides by, remembered across agent restarts (rememberMeasured). And
 * why it keeps no spare after its last decision (plumb status), in memory only: decided again at start.
 */
const measured = new Map<string, Measured>();
const noSpareWhy = new Map<string, string>();

/** Writes `measured` to its file once rememberMeasured has named one (not in unit tests that do not). */
let saver: ReturnType<typeof measuredSaver> | undefined;

/**
 * At agent start: the measurements `file` kept of the APIs in `names` (the state's), written again
 * at once if it kept more (an API the state no longer lists) or was no such file.
 */
export async function rememberMeasured(file: string, names: Iterable<string>): Promise<void> {
  const { measured: kept, tidy } = await readMeasured(file, new Set(names));
  measured.clear();
  for (const [name, figures] of kept) measured.set(name, figures);
  saver = measuredSaver(file, () => renderMeasured(measured));
  if (!tidy) saver.save();
}

/** Settles once the measurements as they are now are on disk (tests). */
export const measuredSaved = (): Promise<void> => saver?.saved() ?? Promise.resolve();

function setMeasured(name: string, figures: Measured | undefined): void {
  if (figures) measured.set(name, figures);
  else if (!measured.delete(name)) return;
  saver?.save();
}

function measure(name: string, more: Measured): void {
  setMeasured(name, { ...measured.get(name), ...more });
}

/**
 * A rollout of a deploy started its `workers` workers and all answered within `ms`: cold, or one
 * handed to the spare. Only a rollout of one worker is a sample: with more, `ms` is the slowest
 * of several cold starts, which a spare's handover is not comparable with.
 */
export function rolloutTook(name: string, ms: number, spareUsed: boolean, workers: number): void {
  if (workers !== 1) return;
  measure(name, spareUsed ? { spareMs: Math.min(ms, measured.get(name)?.spareMs ?? Infinity), lastSpareMs: ms } : { coldMs: ms });
}

/** What the API's spare is decided by, as measured so far (keepSpare). */
export const measuredOf = (name: string): Readonly<Measured> => measured.get(name) ?? {};

/** The API keeps no spare for now, and plumb status says why (a spare that could not start). */
export const noSpare = (name: string, why: string): void => void noSpareWhy.set(name, why);

/** Per API: the releases whose spare decision is queued (spareUndecided until decided). */
const undecided = new Map<string, Set<string>>();
/** Per API with a decision queued: the last one asked for (decisions counts them all), which supersedes those before. */
const lastAsked = new Map<string, number>();
let decisions = 0;

/**
 * A decision of the API's spare for `release`, its live release, is to come (a deploy answered or
 * failed, the agent started: keepSpare); until `decided` is called plumb status gives no reason
 * for the API having none. Undefined when a decision for that release is queued already: that one
 * decides, once. `superseded`: another was asked for since, which decides instead (the agent's
 * start yields to a deploy).
 */
export function spareUndecided(name: string, release: string): { decided: () => void; superseded: () => boolean } | undefined {
  const queued = undecided.get(name) ?? new Set<string>();
  if (queued.has(release)) return undefined;
  noSpareWhy.delete(name);
  undecided.set(name, queued.add(release));
  const mine = ++decisions;
  lastAsked.set(name, mine);
  let done = false;
  return {
    decided: () => {
      if (done) return;
      done = true;
      queued.delete(release);
      if (queued.size > 0) return;
      undecided.delete(name);
      lastAsked.delete(name);
    },
    superseded: () => lastAsked.get(name) !== mine,
  };
}

/**
 * Why the API has no spare (plumb status); null: it has one, or one is being decided. The default
 * is for an API no decision has looked at since the agent started (one whose start could not
 * reconcile the droplet decides none).
 */
export const whyNoSpare = (name: string): string | null => (spares.has(name) || undecided.has(name) ? null : (noSpareWhy.get(name) ?? 'none since the agent started: the next deploy decides'));

/** The spare decisions of all APIs, one after another (inTurn). */
let turn: Promise<unknown> = Promise.resolve();

/** Runs `work` after every spare decision queued before it: each sees the memory the ones before took. */
export function inTurn<T>(work: () => Promise<T>): Promise<T> {
  const next = turn.then(work);
  turn = next.catch(() => undefined);
  return next;
}

const bytesOf = async (name: string, port: number) => {
  const pid = await systemd.unitState(layout.instanceUnit(name, port)).then((u) => u.pid, () => null);
  return pid === null ? null : residentBytes(pid);
};

/** What other APIs' spares will still take as they load: each one's expected size less what it holds now. */
async function stillLoadingBytes(name: string): Promise<number> {
  let bytes = 0;
  for (const [other, spare] of spares) {
    if (other === name) continue;
    const held = (await bytesOf(other, spare.port)) ?? 0;
    bytes += Math.max(0, (measuredOf(other).spareBytes ?? SPARE_EXPECTED_BYTES) - held);
  }
  return bytes;
}

/** What keepSpare reads of the droplet for auto (readingsFor). */
export interface SpareReadings {
  memory: DropletMemory | undefined;
  /** The API's worker's resident memory now, when asked for (no spare of it measured yet); null: not known. */
  workerBytes: number | null;
  /** What other APIs' spares still loading will take (stillLoadingBytes). */
  loadingBytes: number;
}

/** The droplet's memory, the API's worker's on `port` if `worker`, and what other spares still loading will take. */
async function readingsFor(name: string, port: number, worker: boolean): Promise<SpareReadings> {
  const memory = await dropletMemory();
  const workerBytes = worker ? await bytesOf(name, port) : null;
  return { memory, workerBytes, loadingBytes: await stillLoadingBytes(name) };
}

/**
 * After a deploy of `name` whose workers are on `ports`: whether it keeps a spare
 * (spare-policy.ts). A spare's expected size is its last spare's memory, else its first worker's
 * now (more than a spare: it has read the API's code too). A spare ended by the time rule is
 * tried again at the next decision (after the API's next deploy, which starts cold): one slow handover (a busy moment) does not end the API's
 * spares for good. `read`: what auto reads of the droplet (readingsFor; a test gives its own).
 */
export async function keepSpare(name: string, policy: SparePolicy, ports: readonly number[], read = readingsFor): Promise<SpareDecision> {
  const past = measuredOf(name);
  const port = policy === 'auto' && ports.length === 1 ? ports[0] : undefined;
  const readings = port === undefined ? { memory: undefined, workerBytes: null, loadingBytes: 0 } : await read(name, port, past.spareBytes === undefined);
  const decision = decideSpare({
    policy,
    workers: ports.length,
    memory: readings.memory,
    expectedBytes: past.spareBytes ?? readings.workerBytes,
    coldMs: past.coldMs ?? null,
    spareMs: past.spareMs ?? null,
    lastSpareMs: past.lastSpareMs ?? null,
    loadingBytes: readings.loadingBytes,
  });
  if (decision.keep) noSpareWhy.delete(name);
  else noSpareWhy.set(name, decision.why);
  if (!decision.keep && decision.slow) setMeasured(name, { ...past, lastSpareMs: undefined });
  return decision;
}

/**
 * Per API: restarts of its spares since one last took a release (those stopped, plus the live
 * one's), and whether the monitor has said so (spareCrashEvent).
 */
const crashes = new Map<string, { past: number; said: boolean }>();

function countCrashes(name: string, more: number): void {
  const count = crashes.get(name) ?? { past: 0, said: false };
  crashes.set(name, { ...count, past: count.past + more });
}

/** Whether the API has a spare now. */
export const hasSpare = (name: string): boolean => spares.has(name);

/** Ports spares wait on: no rollout may pick them. */
export const sparePorts = (): number[] => [...spares.values()].map((s) => s.port);

/** Each API's spare: its worker unit and port (plumb status). */
export const spareUnits = (): Array<{ name: string; port: number; unit: string }> => [...spares].map(([name, s]) => ({ name, port: s.port, unit: layout.instanceUnit(name, s.port) }));

const restartsOf = (name: string, spare: Spare) => systemd.unitState(layout.instanceUnit(name, spare.port)).then((u) => u.restarts, () => 0);

/**
 * How many of the API's spare's processes since it started had said SPARE_READY before they
 * ended (all that said it but `pid`, the one running): crashes while waiting, the rest of its
 * restarts came while loading. One journalctl, asked only for a spare that restarted.
 */
export async function restartsWhileWaiting(name: string, pid: number | null): Promise<number | null> {
  const spare = spares.get(name);
  if (!spare) return null;
  const said = await pidsThatSaid({ unit: layout.instanceUnit(name, spare.port), sinceMs: spare.startedAt }, SPARE_READY);
  return said === null ? null : [...said].filter((p) => p !== pid).length;
}

/** What a spare must have loaded for a release to use it. */
export interface SpareFit {
  library: string | null | undefined;
  packages: readonly string[];
  memoryMax: string | null;
}

/** What a spare of `release` (its library and packages) under the API's `memoryMax` must have loaded. */
export const fitOf = (release: Pick<Release, 'library' | 'packages'> | undefined, memoryMax: string | null): SpareFit => ({ library: release?.library, packages: release?.packages ?? [], memoryMax });

/** Two fits load the same. */
export const sameFit = (a: SpareFit, b: SpareFit): boolean => fitKey(a) === fitKey(b);

const fitKey = (fit: SpareFit) => JSON.stringify({ library: fit.library ?? null, packages: [...fit.packages].sort(), memoryMax: fit.memoryMax });

async function keyOf(fit: SpareFit): Promise<string> {
  const dpkg = await stat('/var/lib/dpkg/status').then((s) => `${s.ino} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`, () => '-');
  return `${fitKey(fit)} ${dpkg}`;
}

/** Starts the API's spare on `port` (none may be running) with `vars`: loads what `fit` says, then waits. */
export async function startSpare(name: string, port: number, fit: SpareFit, vars: SpareVars): Promise<void> {
  const fifo = layout.spareFifo(name);
  const account = await ensureApiAccount(name);
  await rm(fifo, { force: true });
  await execa('mkfifo', ['-m', '0600', fifo]);
  await chown(fifo, account.uid, account.gid);
  await mkdir(layout.instancesDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(layout.instanceEnvFile(name, port), renderSpareEnv(name, fit.library ? layout.libraryGeneration(name, fit.library) : fit.library, fit.packages, vars.env, vars.secrets), 0o600);
  spares.set(name, { port, key: await keyOf(fit), fit, envKey: varsKey(vars.env), secretsKey: varsKey(vars.secrets), startedAt: Date.now() });
  await systemd.start(layout.instanceUnit(name, port));
  log.info('spare started', { api: name, port });
}

/** What the API's spare loaded, if it has one that started with other --env or secrets than `vars` (a secrets change: start it again). */
export function staleSpare(name: string, vars: SpareVars): SpareFit | undefined {
  const spare = spares.get(name);
  return spare && (spare.envKey !== varsKey(vars.env) || spare.secretsKey !== varsKey(vars.secrets)) ? spare.fit : undefined;
}

/**
 * Stops the API's spare, if it has one (a spare that does not fit, a newer one); its restarts
 * still count towards SPARE_CRASHES_ALERT. `forget`: the API keeps no spare any more (a remove,
 * --no-spare), so neither do they.
 */
export async function stopSpare(name: string, opts: { forget?: boolean } = {}): Promise<void> {
  const spare = spares.get(name);
  if (opts.forget) {
    crashes.delete(name);
    setMeasured(name, undefined);
    noSpareWhy.delete(name);
  }
  else if (spare) countCrashes(name, await restartsOf(name, spare));
  spares.delete(name);
  if (spare) await retireWorker(name, spare.port);
}

/**
 * For the monitor, under the API's lock: a `spare-crashing` event, once, when the API's spares
 * restarted SPARE_CRASHES_ALERT times since one last took a release. Each such deploy started
 * cold and said so in its step, but nobody may read a deploy's steps (CI), and a spare that
 * crashes as it loads crashes again in every deploy's next spare.
 */
export async function spareCrashEvent(name: string): Promise<EventInput | undefined> {
  const count = crashes.get(name) ?? { past: 0, said: false };
  const spare = spares.get(name);
  if (count.said || (!spare && count.past === 0)) return undefined;
  const total = count.past + (spare ? await restartsOf(name, spare) : 0);
  if (total < SPARE_CRASHES_ALERT) return undefined;
  crashes.set(name, { ...count, said: true });
  return {
    kind: 'spare-crashing',
    api: name,
    // Not a worker's: an alert would call the port one.
    port: null,
    detail: `its warm spares restarted ${total} times since one last took a release${spare ? ` (now on port ${spare.port})` : ''}: every deploy starts cold meanwhile (journalctl -u 'plumber-${name}@*'; deploy --no-spare turns the spare off)`,
  };
}

/** A spare taken for a release: write the worker's env file first, then `handOver`. */
export interface TakenSpare {
  port: number;
  /** How long the deploy waited for it to finish loading; undefined: it was waiting already. */
  loadingWaitMs?: number;
  /** Hands the release over: null once written, else why not (the spare ended first): start the worker cold then. */
  handOver: () => Promise<string | null>;
  /** Closes the fifo if the handover never came (a rollout that failed first); the worker is retired as any other. */
  drop: () => Promise<void>;
}

/** What became of the API's spare for a release: taken, or not used (and stopped) and why; `why` null: it had none. */
export type SpareOutcome = { spare: TakenSpare; why?: undefined } | { spare?: undefined; why: string | null };

/** How takeSpare treats a spare still loading. */
export interface SpareWait {
  /** Wait for it (whenWaiting); false: a rollout of several workers, whose cold ones would wait behind it. */
  wait: boolean;
  /** Called once if it waits (a progress line). */
  waiting: () => void;
}

/**
 * The API's spare if it fits the release and waits on its fifo (one still loading is waited for
 * when `loading.wait`, within a bound: whenWaiting); else no spare is left and `why` says why it
 * was not used. `release`: its directory (all the spare is handed), --env and the API's secrets
 * (which must be those the spare started with). `unitChanged`: the unit file was rewritten since
 * the spare started.
 */
export async function takeSpare(name: string, fit: SpareFit, release: SpareVars & { dir: string }, unitChanged: boolean, loading: SpareWait): Promise<SpareOutcome> {
  const spare = spares.get(name);
  if (!spare) return { why: null };
  // One line per variable, the value in hex (the runner reads any variable so).
  const handover = `PLUMB_RELEASE_DIR ${Buffer.from(release.dir, 'utf8').toString('hex')}\n`;
  const unit = await systemd.unitState(layout.instanceUnit(name, spare.port)).catch(() => undefined);
  const why =
    unitChanged ? 'its unit changed'
    : spare.key !== (await keyOf(fit)) ? 'it loaded other packages or settings'
    : spare.envKey !== varsKey(release.env) ? 'it started with another --env'
    : spare.secretsKey !== varsKey(release.secrets) ? 'it started with other secrets'
    // systemd started it again (Restart=always): whatever ended it (a kill, the OOM killer, a
    // package as it loads) may end it again, and the health gate counts a restart as a failed start.
    : await crashed(name, unit);
  const waited = why === undefined ? await whenWaiting(name, spare, loading) : undefined;
  const fifo = waited?.fifo;
  if (!fifo) {
    const unused = why ?? (await crashed(name, waited?.unit)) ?? waited?.why ?? 'it was not waiting';
    log.info('spare not used', { api: name, port: spare.port, why: unused });
    // An end systemd has not restarted yet (it waits RestartSec=) is a crash its restarts do not count.
    if (waited?.ended) countCrashes(name, 1);
    await stopSpare(name);
    return { why: unused };
  }
  spares.delete(name);
  // Its size as it waits: what the API's next spare is expected to take (keepSpare).
  const bytes = unit?.pid ? await residentBytes(unit.pid) : null;
  if (bytes !== null) measure(name, { spareBytes: bytes });
  let closed = false;
  const drop = async () => {
    if (closed) return;
    closed = true;
    await fifo.close();
  };
  return {
    spare: {
      port: spare.port,
      loadingWaitMs: waited.waitedMs,
      handOver: async () => {
        try {
          // Dead for the write once no reader holds the fifo: a write-only open without blocking fails (ENXIO).
          const noReader = () => open(layout.spareFifo(name), constants.O_WRONLY | constants.O_NONBLOCK).then((h) => h.close().then(() => false), () => true);
          await killAtCrashPoint('spare-handover', async () => (await systemd.unitState(layout.instanceUnit(name, spare.port))).pid, noReader);
          // No reader any more (it ended since the open): EPIPE, and nothing was handed over.
          await fifo.writeFile(handover);
          crashes.delete(name);
          return null;
        } catch (err) {
          log.warn('spare ended before the handover', { api: name, port: spare.port, error: (err as Error).message });
          countCrashes(name, 1);
          return 'it ended before it took the release';
        } finally {
          await drop();
        }
      },
      drop,
    },
  };
}

/**
 * The spare's fifo, opened for the handover once the spare waits on it (a write-only open without
 * blocking fails until a reader has it open). A spare still loading (a redeploy seconds after the
 * last) is waited for while it runs and has not restarted: it does a cold start's work (plus its
 * warm-up) and started earlier, so a worker started now would rarely answer sooner. Until it has
 * loaded for twice the API's last cold start (else SPARE_LOADING_WAIT_MS): one slower than that is
 * stuck or starved, and the time rule hears of it (the deploy took that wait more than a cold
 * start), so the API's next deploy keeps no spare and the one after tries again. No fifo: it ended
 * (`ended`: not restarted yet), restarted, or was still loading at that bound; `waitedMs`
 * undefined: it was waiting already.
 */
async function whenWaiting(name: string, spare: Spare, loading: SpareWait): Promise<{ fifo: FileHandle; waitedMs?: number } | { fifo?: undefined; why: string; unit?: systemd.UnitState; ended?: true }> {
  const started = Date.now();
  const coldMs = measuredOf(name).coldMs;
  const deadline = loading.wait ? loadDeadline(name, spare) : started;
  for (let polls = 0; ; polls++) {
    const fifo = await open(layout.spareFifo(name), constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
    const waitedMs = Date.now() - started;
    if (fifo) return { fifo, ...(polls > 0 ? { waitedMs } : {}) };
    if (Date.now() >= deadline) {
      if (!loading.wait) return { why: 'it was still loading, and the other workers start cold at once' };
      log.warn('spare still loading at the bound', { api: name, port: spare.port, waitedMs });
      measure(name, { lastSpareMs: waitedMs + (coldMs ?? 0) });
      const after = seconds(Date.now() - spare.startedAt);
      return { why: `it was still loading ${after} s after it started, ${coldMs === undefined ? 'the longest a deploy waits for one' : `twice the ${seconds(coldMs)} s a cold start takes`}` };
    }
    const unit = await systemd.unitState(layout.instanceUnit(name, spare.port)).catch(() => undefined);
    if (!unit || unit.restarts > 0) return { why: 'it was not running', unit };
    if (unit.active !== 'active') return { why: `it ${spareCrashes(1, 0)}`, ended: true };
    if (polls === 0) loading.waiting();
    await sleep(SPARE_LOADING_POLL_MS);
  }
}

/**
 * Settles once the API's spare (if it has one) has loaded (said SPARE_READY), ended, or loaded for
 * twice the API's cold start (whenWaiting's bound): the agent's start lets one spare load at a time.
 */
export async function spareLoaded(name: string): Promise<void> {
  const spare = spares.get(name);
  if (!spare) return;
  const deadline = loadDeadline(name, spare);
  const unit = layout.instanceUnit(name, spare.port);
  while (Date.now() < deadline && spares.get(name) === spare) {
    const state = await systemd.unitState(unit).catch(() => undefined);
    if (!state || state.active !== 'active' || state.pid === null) return;
    if ((await pidsThatSaid({ pids: [state.pid] }, SPARE_READY))?.has(state.pid)) return;
    await sleep(SPARE_LOADED_POLL_MS);
  }
}

/** When a spare still loading counts as stuck: once it has loaded for twice the API's cold start (else SPARE_LOADING_WAIT_MS in all). */
const loadDeadline = (name: string, spare: Spare) => spare.startedAt + 2 * (measuredOf(name).coldMs ?? SPARE_LOADING_WAIT_MS / 2);

/** Seconds to a tenth, as the deploy's steps print them. */
export const seconds = (ms: number) => (ms / 1000).toFixed(1);

/** Why a spare that systemd restarted is not used, worded by when it crashed; undefined: it never did (or systemd did not say). */
async function crashed(name: string, unit: systemd.UnitState | undefined): Promise<string | undefined> {
  if (!unit || unit.restarts === 0) return undefined;
  return `it ${spareCrashes(unit.restarts, await restartsWhileWaiting(name, unit.pid))}`;
}
