import { chown, mkdir, open, rm, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { execa } from 'execa';
import { SPARE_HANDOVER_MAX_BYTES } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { log } from '../log.js';
import { renderSpareEnv } from '../render/systemd.js';
import { ensureApiAccount } from '../system/api-account.js';
import { layout } from '../system/layout.js';
import * as systemd from '../system/systemd.js';
import { retireWorker } from './workers.js';

/**
 * The warm spare (issue 14, docs/architecture.md): per API, one worker started early on a port of
 * its own, R with plumber and the live release's packages loaded, waiting on a fifo. The next
 * deploy writes that worker's env file as for any worker, then hands the release directory and
 * the environment over the fifo; the runner sets them, changes into the release and serves. The
 * process stays the worker unit `plumber-NAME@PORT` it always was: systemd restarts it (cold,
 * from the env file now written), applies its memory limit, and its lines are in its journal.
 *
 * Used only when the spare loaded what the release would: the same R library generation, the same
 * packages, dpkg's database unchanged (no Debian package upgraded under it) and the same unit
 * settings; only when no variable that R reads once at its start is set (see STARTUP_ENV); and
 * only when it never crashed while it waited. Else the spare is stopped and the release starts
 * cold, and the deploy's step says why. Kept in memory: an agent that starts
 * again stops every worker its state does not list (reconcile.ts), spares included.
 */

interface Spare {
  port: number;
  key: string;
}

const spares = new Map<string, Spare>();

/** Ports spares wait on: no rollout may pick them. */
export const sparePorts = (): number[] => [...spares.values()].map((s) => s.port);

/** The port of the API's spare, if it has one (plumb status). */
export const sparePort = (name: string): number | undefined => spares.get(name)?.port;

/**
 * Variables R (or its startup files) reads once as it starts: R_LIBS*, R_HOME, R_PROFILE*, R's
 * temporary directory (TMPDIR), HOME (tilde expansion), the locale. Setting them after R runs
 * would not do what a cold start does.
 */
const STARTUP_ENV = /^(R_.*|HOME|TMPDIR|TMP|TEMP|LANG|LANGUAGE|LC_.*)$/;

/** What a spare must have loaded for a release to use it. */
export interface SpareFit {
  library: string | null | undefined;
  packages: readonly string[];
  memoryMax: string | null;
}

async function keyOf(fit: SpareFit): Promise<string> {
  const dpkg = await stat('/var/lib/dpkg/status').then((s) => `${s.ino} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`, () => '-');
  return JSON.stringify({ library: fit.library ?? null, packages: [...fit.packages].sort(), memoryMax: fit.memoryMax, dpkg });
}

/** Starts the API's spare on `port` (none may be running): loads what `fit` says, then waits. */
export async function startSpare(name: string, port: number, fit: SpareFit): Promise<void> {
  const fifo = layout.spareFifo(name);
  const account = await ensureApiAccount(name);
  await rm(fifo, { force: true });
  await execa('mkfifo', ['-m', '0600', fifo]);
  await chown(fifo, account.uid, account.gid);
  await mkdir(layout.instancesDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(layout.instanceEnvFile(name, port), renderSpareEnv(name, fit.library ? layout.libraryGeneration(name, fit.library) : fit.library, fit.packages), 0o600);
  spares.set(name, { port, key: await keyOf(fit) });
  await systemd.start(layout.instanceUnit(name, port));
  log.info('spare started', { api: name, port });
}

/** Stops the API's spare, if it has one (a remove, a spare that does not fit). */
export async function stopSpare(name: string): Promise<void> {
  const spare = spares.get(name);
  spares.delete(name);
  if (spare) await retireWorker(name, spare.port);
}

/** A spare taken for a release: write the worker's env file first, then `handOver`. */
export interface TakenSpare {
  port: number;
  handOver: () => Promise<void>;
  /** Closes the fifo if the handover never came (a rollout that failed first); the worker is retired as any other. */
  drop: () => Promise<void>;
}

/** What became of the API's spare for a release: taken, or not used (and stopped) and why; `why` null: it had none. */
export type SpareOutcome = { spare: TakenSpare; why?: undefined } | { spare?: undefined; why: string | null };

/**
 * The API's spare if it fits the release and is waiting on its fifo (opened without blocking:
 * a spare still loading, or one that died, is not waited for); else no spare is left and `why`
 * says why it was not used. `vars`: what differs from the spare's own environment: the release
 * directory, --env and secrets (a secret over an --env of the same name, as in the env file);
 * R_LIBS is the same. `unitChanged`: the unit file was rewritten since the spare started.
 */
export async function takeSpare(name: string, fit: SpareFit, vars: Record<string, string>, unitChanged: boolean): Promise<SpareOutcome> {
  const spare = spares.get(name);
  if (!spare) return { why: null };
  // One line per variable, the value in hex: any text a value may hold passes.
  const handover = Object.entries(vars).map(([k, v]) => `${k} ${Buffer.from(v, 'utf8').toString('hex')}\n`).join('');
  const why =
    unitChanged ? 'its unit changed'
    : spare.key !== (await keyOf(fit)) ? 'it loaded other packages or settings'
    : Object.keys(vars).some((k) => STARTUP_ENV.test(k)) ? 'the environment sets a variable R reads as it starts'
    : Buffer.byteLength(handover) > SPARE_HANDOVER_MAX_BYTES ? 'the environment is larger than a pipe holds'
    // systemd started it again (Restart=always): whatever ended it while it waited (a kill, the
    // OOM killer) may end it again, and the health gate counts a restart as a failed start.
    : (await systemd.unitState(layout.instanceUnit(name, spare.port)).then((u) => u.restarts, () => 0)) > 0 ? 'it crashed while waiting'
    : undefined;
  const fifo = why === undefined ? await open(layout.spareFifo(name), constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined) : undefined;
  if (!fifo) {
    const unused = why ?? 'it was not waiting (still loading, or not running)';
    log.info('spare not used', { api: name, port: spare.port, why: unused });
    await stopSpare(name);
    return { why: unused };
  }
  spares.delete(name);
  let closed = false;
  const drop = async () => {
    if (closed) return;
    closed = true;
    await fifo.close();
  };
  return {
    spare: {
      port: spare.port,
      handOver: async () => {
        try {
          await fifo.writeFile(handover);
        } finally {
          await drop();
        }
      },
      drop,
    },
  };
}
