import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import {
  AGENT_CONFIRM_TIMEOUT_MS,
  AGENT_PACKAGE_MAX_BYTES,
  AGENT_PACKAGE_MAX_ENTRIES,
  AGENT_PACKAGE_MAX_EXTRACTED_BYTES,
  AGENT_SMOKE_TIMEOUT_MS,
  BUNDLE_MAX_RATIO,
  PlumbError,
  type UpgradeRequest,
  type UpgradeResult,
} from '@plumb/shared';
import { DEFAULT_EXTRACT_LIMITS, extractBundle } from '../bundle/extract.js';
import { log } from '../log.js';
import { abandonTrial, beginTrial, direction, ensureLayout, install, upgradeFiles } from '../upgrade/install.js';
import type { Upload } from '../upload.js';
import { SHARED, StepError, type OpContext } from './context.js';

export interface UpgradeContext {
  ctx: OpContext;
  upload: Upload;
  stateDir: string;
  runningVersion: string;
  /** Requests other than this one in flight on the agent: a restart would cut them. */
  othersInFlight: () => number;
  /** Runs `work` once the answer has gone out. */
  afterAnswer: (work: () => void) => void;
}

const PACKAGE_NAME = '@plumb/agent';
const UPGRADE_LOCK = 'upgrade';

/**
 * `plumb upgrade`: receives the agent package, checks its sha512, unpacks it beside the running
 * version, checks that it runs (`--version`), then starts it on trial (upgrade/install.ts) and
 * restarts into it once the controller has the answer. The APIs (their own units) and nginx go on
 * serving meanwhile; the TLS key, state and events are in /var/lib/plumb, untouched.
 */
export async function upgrade(req: UpgradeRequest, uc: UpgradeContext): Promise<UpgradeResult> {
  const { ctx, runningVersion: from } = uc;
  const id = randomBytes(6).toString('hex');
  const way = direction(from, req.version);
  if (way === 'same') return { id, from, to: req.version, outcome: 'up-to-date', confirmTimeoutMs: AGENT_CONFIRM_TIMEOUT_MS };
  if (way === 'down' && !req.force) {
    throw new PlumbError('DOWNGRADE_REFUSED', `the agent is version ${from}, newer than ${req.version}`, 'add --force to install the older version anyway');
  }
  // One upgrade at a time, but the shared lock (every routing change, every deploy's switch) only
  // for the install itself: an upload over a slow link must not hold up the droplet's other work.
  return ctx.locks.with(UPGRADE_LOCK, async () => {
    if (await readFile(upgradeFiles(uc.stateDir).pending).then(() => true, () => false)) {
      throw new PlumbError('BUSY', 'an upgrade of this agent is already under way', 'wait a minute and look at `plumb status`');
    }
    const busy = () => {
      if (uc.othersInFlight() > 0) throw new PlumbError('BUSY', 'the agent is busy with another request (a deploy?)', 'run plumb upgrade again once it is done');
    };
    busy();
    await mkdir(install.versionsDir, { recursive: true, mode: 0o755 });
    const tarball = path.join(install.versionsDir, `.incoming-${id}.tgz`);
    const unpacked = path.join(install.versionsDir, `.unpack-${id}`);
    try {
      ctx.progress('receiving the agent package');
      await receive(uc.upload, tarball, req.sha512);
      ctx.progress('unpacking and checking it');
      await extractBundle(createReadStream(tarball), unpacked, {
        ...DEFAULT_EXTRACT_LIMITS,
        maxBytes: AGENT_PACKAGE_MAX_BYTES,
        maxExtractedBytes: AGENT_PACKAGE_MAX_EXTRACTED_BYTES,
        maxEntries: AGENT_PACKAGE_MAX_ENTRIES,
        maxRatio: BUNDLE_MAX_RATIO,
      });
      const packageDir = path.join(unpacked, 'package');
      await checkPackage(packageDir, req.version);
      await ctx.locks.with(SHARED, async () => {
        // Asked again: a deploy may have begun while the package travelled.
        busy();
        await ensureLayout(from);
        const target = install.versionDir(req.version);
        await rm(target, { recursive: true, force: true });
        await rename(packageDir, target);
      });
    } finally {
      await rm(tarball, { force: true });
      await rm(unpacked, { recursive: true, force: true });
    }
    ctx.progress('restarting into the new agent');
    const trial = { id, from, to: req.version, stateDir: uc.stateDir };
    await beginTrial(trial);
    uc.afterAnswer(() => {
      log.info('upgrade: restarting into the new agent', { id, from, to: req.version });
      // --no-block: systemctl must not wait for (and be killed with) the agent it restarts.
      void execa('systemctl', ['restart', '--no-block', install.unit], { reject: false }).then(async (r) => {
        if (r.exitCode === 0) return;
        log.error('upgrade: could not restart the agent', { error: r.stderr });
        await abandonTrial(trial);
      });
    });
    return { id, from, to: req.version, outcome: 'restarting', confirmTimeoutMs: AGENT_CONFIRM_TIMEOUT_MS };
  });
}

/** Writes the package to `file`, refusing it unless its sha512 is the one the controller sent. */
async function receive(upload: Upload, file: string, sha512: string): Promise<void> {
  const hash = createHash('sha512');
  const out = await open(file, 'wx', 0o600);
  try {
    for await (const chunk of upload) {
      hash.update(chunk);
      await out.write(chunk);
    }
  } finally {
    await out.close();
  }
  const actual = hash.digest('hex');
  if (actual !== sha512) throw new StepError('AGENT_PACKAGE_INTEGRITY', 'receiving the agent package', `the agent package arrived with sha512 ${actual.slice(0, 16)}…, not the ${sha512.slice(0, 16)}… announced; nothing was installed`);
}

/** The package is the agent, of the version announced, and its bundle starts far enough to say so. */
async function checkPackage(dir: string, version: string): Promise<void> {
  const step = 'checking the new agent';
  const manifest = await readFile(path.join(dir, 'package.json'), 'utf8').then((t) => JSON.parse(t) as { name?: unknown; version?: unknown }, () => undefined);
  if (manifest?.name !== PACKAGE_NAME || manifest.version !== version) {
    throw new StepError('AGENT_PACKAGE_INVALID', step, `the package is not ${PACKAGE_NAME} ${version} (its package.json says ${String(manifest?.name)} ${String(manifest?.version)})`);
  }
  const run = await execa(process.execPath, [install.bundle(dir), '--version'], { reject: false, timeout: AGENT_SMOKE_TIMEOUT_MS, all: true });
  if (run.exitCode !== 0 || run.stdout.trim() !== version) {
    throw new StepError('AGENT_PACKAGE_BROKEN', step, `the new agent ${version} does not start (\`plumb-agent --version\` ${run.timedOut ? 'timed out' : `exited ${run.exitCode ?? '?'}`}); nothing was switched`, (run.all ?? '').split('\n').slice(-20));
  }
}
