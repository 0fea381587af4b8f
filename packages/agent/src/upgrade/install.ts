import { cp, mkdir, readFile, readdir, readlink, realpath, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import * as z from 'zod';
import { AGENT_CONFIRM_TIMEOUT_MS, AGENT_NODE_FLAGS, AGENT_VERSIONS_KEPT, compareVersions, UpgradeRecord } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { log } from '../log.js';

/**
 * Where the agent is installed and how one version replaces another (docs/security.md, "Upgrades").
 * Versions live side by side in /opt/plumb-agent/versions/V; `current` links to the one the unit
 * starts. An upgrade starts the new version on trial through a runtime drop-in (in /run, so a
 * reboot forgets it and starts `current`, the old one); the new agent confirms once it serves,
 * which switches `current`. A guard armed in systemd before the restart puts the old agent back
 * if no confirmation comes. Who decides is settled by one rename of pending.json: whoever
 * renames it first (the new agent confirming, or the guard rolling back).
 */
export const install = {
  versionsDir: '/opt/plumb-agent/versions',
  versionDir: (version: string) => `/opt/plumb-agent/versions/${version}`,
  current: '/opt/plumb-agent/current',
  bundle: (packageDir: string) => `${packageDir}/bundle/plumb-agent.mjs`,
  binLink: '/usr/local/bin/plumb-agent',
  unit: 'plumb-agent.service',
  /** Written once, on a droplet installed before versions lived side by side. */
  layoutDropIn: '/etc/systemd/system/plumb-agent.service.d/10-plumb-layout.conf',
  trialDropIn: '/run/systemd/system/plumb-agent.service.d/90-plumb-upgrade.conf',
  guardUnit: (id: string) => `plumb-agent-upgrade-${id}`,
} as const;

const CURRENT_BUNDLE = install.bundle(install.current);

export const upgradeFiles = (stateDir: string) => ({
  dir: path.join(stateDir, 'upgrade'),
  pending: path.join(stateDir, 'upgrade', 'pending.json'),
  last: path.join(stateDir, 'upgrade', 'last.json'),
});

/** The record as kept on disk: the wire's record, and whether the event log has it yet. */
const RecordFile = UpgradeRecord.extend({ eventRecorded: z.boolean().default(false) });
type RecordFile = z.infer<typeof RecordFile>;

async function readRecord(file: string): Promise<RecordFile | null> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return null;
  try {
    const parsed = RecordFile.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

const writeRecord = (file: string, record: RecordFile) => writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`, 0o600);

/** Renames pending.json to last.json: true for whoever does it first, false when it was gone. */
async function claim(stateDir: string): Promise<boolean> {
  const files = upgradeFiles(stateDir);
  try {
    await rename(files.pending, files.last);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** The upgrade in progress, else the last one: what the hello reports. */
export async function lastUpgrade(stateDir: string): Promise<UpgradeRecord | null> {
  const files = upgradeFiles(stateDir);
  const record = (await readRecord(files.pending)) ?? (await readRecord(files.last));
  if (!record) return null;
  const { eventRecorded: _e, ...wire } = record;
  return wire;
}

async function systemctl(args: string[]): Promise<void> {
  const result = await execa('systemctl', args, { reject: false, timeout: 60_000 });
  if (result.exitCode !== 0) throw new Error(`systemctl ${args.join(' ')}: ${(result.stderr || result.stdout).trim()}`);
}

/** Points `link` at `target` by renaming a new link over it, so it is never missing. */
async function switchLink(link: string, target: string): Promise<void> {
  const tmp = `${link}.new-${process.pid}`;
  await rm(tmp, { force: true });
  await symlink(target, tmp);
  await rename(tmp, link);
}

/** The version directory `current` names, or null before the side-by-side layout. */
async function currentVersion(): Promise<string | null> {
  return readlink(install.current).then((t) => path.basename(t), () => null);
}

/**
 * Brings a droplet installed before versions lived side by side (the agent in /opt/plumb-agent/bundle,
 * the unit starting it there) to the layout: the running package copied to versions/V, `current`
 * made, the unit pointed at `current` by a drop-in. Nothing restarts; the next start is the same code.
 */
export async function ensureLayout(runningVersion: string): Promise<void> {
  await mkdir(install.versionsDir, { recursive: true, mode: 0o755 });
  if ((await currentVersion()) === null) {
    const running = path.dirname(path.dirname(await realpath(process.argv[1] ?? '')));
    const target = install.versionDir(runningVersion);
    if (running !== (await realpath(target).catch(() => ''))) {
      await rm(target, { recursive: true, force: true });
      await mkdir(target, { mode: 0o755 });
      // The old layout is the package unpacked in /opt/plumb-agent itself, now beside versions/.
      const entries = (await readdir(running)).filter((name) => name !== 'versions' && name !== 'current' && !name.startsWith('.'));
      for (const name of entries) await cp(path.join(running, name), path.join(target, name), { recursive: true });
    }
    await switchLink(install.current, `versions/${runningVersion}`);
    log.info('agent layout: versions side by side', { version: runningVersion, from: running });
  }
  await ensureUnitStartsCurrent();
  const bin = await readlink(install.binLink).catch(() => null);
  if (bin !== null && bin !== CURRENT_BUNDLE) await switchLink(install.binLink, CURRENT_BUNDLE);
}

/**
 * Makes the unit start `current` with this agent's node flags (AGENT_NODE_FLAGS), by the layout
 * drop-in, when its ExecStart says otherwise: a droplet provisioned before versions lived side by
 * side, or before the flags existed, whose unit file (cloud-init wrote it once) nothing else
 * rewrites. Run on an upgrade and at every start of a confirmed agent, so an upgraded droplet's
 * next start has this version's flags. Takes effect at the next start; nothing restarts.
 */
export async function ensureUnitStartsCurrent(): Promise<void> {
  const shown = await execa('systemctl', ['show', install.unit, '-p', 'ExecStart', '--value'], { reject: false });
  // Not under systemd's plumb-agent.service (a test running the agent elsewhere): nothing to mend.
  if (shown.exitCode !== 0 || !shown.stdout.includes('plumb-agent')) return;
  // During a trial the runtime drop-in's ExecStart is shown; the layout drop-in is for after it.
  if (await readFile(install.trialDropIn).then(() => true, () => false)) return;
  if (shown.stdout.includes(CURRENT_BUNDLE) && AGENT_NODE_FLAGS.every((flag) => shown.stdout.includes(flag))) return;
  await mkdir(path.dirname(install.layoutDropIn), { recursive: true });
  await writeFileAtomic(install.layoutDropIn, `# Written by plumb-agent: start the version /opt/plumb-agent/current links to, with its node flags.\n[Service]\nExecStart=\nExecStart=${process.execPath} ${AGENT_NODE_FLAGS.join(' ')} ${CURRENT_BUNDLE}\n`, 0o644);
  await systemctl(['daemon-reload']);
  log.info("agent unit: ExecStart set to start current with this version's node flags", { flags: AGENT_NODE_FLAGS.join(' ') });
}

export interface Trial {
  id: string;
  from: string;
  to: string;
  stateDir: string;
}

/**
 * Starts `to` on trial at the next start of the unit: records the pending upgrade, writes the
 * runtime drop-in, and arms the guard (a systemd timer running the old agent's --upgrade-guard).
 * The caller then restarts the unit.
 */
export async function beginTrial(trial: Trial): Promise<void> {
  const files = upgradeFiles(trial.stateDir);
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  const record: RecordFile = { id: trial.id, from: trial.from, to: trial.to, startedAt: new Date().toISOString(), outcome: 'pending', finishedAt: null, reason: null, log: [], eventRecorded: false };
  await writeRecord(files.pending, record);
  try {
    await mkdir(path.dirname(install.trialDropIn), { recursive: true });
    await writeFileAtomic(install.trialDropIn, `# Written by plumb-agent for upgrade ${trial.id}; gone at reboot.\n[Service]\nExecStart=\nExecStart=${process.execPath} ${AGENT_NODE_FLAGS.join(' ')} ${install.bundle(install.versionDir(trial.to))}\n`, 0o644);
    await systemctl(['daemon-reload']);
    // The guard runs the old version's code (known to work: it is running now), outside the agent's unit.
    await systemctl(['reset-failed', `${install.guardUnit(trial.id)}.service`]).catch(() => undefined);
    const run = await execa(
      'systemd-run',
      [
        `--unit=${install.guardUnit(trial.id)}`,
        '--description=plumb-agent upgrade guard',
        `--on-active=${Math.round(AGENT_CONFIRM_TIMEOUT_MS / 1000)}s`,
        '--timer-property=AccuracySec=1s',
        '--collect',
        `--setenv=PLUMB_AGENT_STATE_DIR=${trial.stateDir}`,
        process.execPath,
        install.bundle(install.versionDir(trial.from)),
        '--upgrade-guard',
        trial.id,
      ],
      { reject: false, timeout: 60_000 },
    );
    if (run.exitCode !== 0) throw new Error(`systemd-run: ${(run.stderr || run.stdout).trim()}`);
  } catch (err) {
    await abandonTrial(trial);
    throw err;
  }
}

/** Undoes beginTrial before the restart (nothing switched yet). */
export async function abandonTrial(trial: Trial): Promise<void> {
  await rm(upgradeFiles(trial.stateDir).pending, { force: true });
  await rm(install.trialDropIn, { force: true });
  await execa('systemctl', ['stop', `${install.guardUnit(trial.id)}.timer`], { reject: false });
  await execa('systemctl', ['daemon-reload'], { reject: false });
}

/** What the agent does about upgrades as it starts, and once it serves. */
export interface Settled {
  /** Called once the agent serves: confirms a trial of this version; the event to record when it did. */
  confirm(): Promise<Settled['event']>;
  /** Set when this start ends an upgrade (confirmed later, or rolled back): for the event log. */
  event: { kind: 'agent-upgraded' | 'agent-rolled-back'; detail: string } | null;
}

/**
 * On start: a pending upgrade to this version is confirmed once `confirm()` is called (the agent
 * serves). A pending upgrade to another version means the trial ended without confirmation (a
 * reboot, or the guard's restart): it is recorded as rolled back. A rollback the guard recorded
 * is put in the event log once.
 */
export async function settleUpgrade(stateDir: string, version: string): Promise<Settled> {
  const files = upgradeFiles(stateDir);
  const pending = await readRecord(files.pending);
  const none: Settled = { confirm: async () => null, event: null };
  if (pending && pending.to === version) {
    return { confirm: () => confirmTrial(stateDir, pending), event: null };
  }
  if (pending && (await claim(stateDir))) {
    await finishRollback(stateDir, pending, `the droplet started agent ${version} again before ${pending.to} confirmed (a reboot?)`, []);
    await rm(install.trialDropIn, { force: true });
    await execa('systemctl', ['stop', `${install.guardUnit(pending.id)}.timer`], { reject: false });
  }
  const last = await readRecord(files.last);
  if (!last) return none;
  // Confirmation claimed but not finished (the new agent stopped half way): finish it now.
  if (last.outcome === 'pending' && last.to === version) return { confirm: () => finishConfirm(stateDir, last), event: null };
  if (last.outcome === 'pending') await finishRollback(stateDir, last, `agent ${last.to} stopped while confirming`, []);
  const settled = await readRecord(files.last);
  if (!settled || settled.eventRecorded) return none;
  await writeRecord(files.last, { ...settled, eventRecorded: true });
  const event = settled.outcome === 'rolled-back' ? { kind: 'agent-rolled-back' as const, detail: `agent ${settled.to} was rolled back to ${settled.from}: ${settled.reason ?? 'no reason recorded'}` } : null;
  return { ...none, event };
}

async function confirmTrial(stateDir: string, pending: RecordFile): Promise<Settled['event']> {
  if (!(await claim(stateDir))) {
    log.warn('upgrade: the guard decided first; this agent will be replaced by the previous one', { id: pending.id });
    return null;
  }
  return finishConfirm(stateDir, pending);
}

async function finishConfirm(stateDir: string, record: RecordFile): Promise<Settled['event']> {
  await switchLink(install.current, `versions/${record.to}`);
  await writeRecord(upgradeFiles(stateDir).last, { ...record, outcome: 'confirmed', finishedAt: new Date().toISOString(), eventRecorded: true });
  await rm(install.trialDropIn, { force: true });
  await systemctl(['daemon-reload']);
  await execa('systemctl', ['stop', `${install.guardUnit(record.id)}.timer`], { reject: false });
  await pruneVersions(record.to, record.from);
  // The package as the layout before versions/ had it, unpacked in /opt/plumb-agent itself: no longer started.
  for (const legacy of ['bundle', 'package.json']) await rm(path.join(path.dirname(install.current), legacy), { recursive: true, force: true });
  log.info('upgrade confirmed', { id: record.id, from: record.from, to: record.to });
  return { kind: 'agent-upgraded', detail: `agent ${record.from} -> ${record.to}` };
}

async function finishRollback(stateDir: string, record: RecordFile, reason: string, lines: string[]): Promise<void> {
  await writeRecord(upgradeFiles(stateDir).last, { ...record, outcome: 'rolled-back', finishedAt: new Date().toISOString(), reason, log: lines, eventRecorded: false });
  log.warn('upgrade rolled back', { id: record.id, from: record.from, to: record.to, reason });
}

/** Keeps the current version and the one before; a failed upgrade's directory goes too. */
async function pruneVersions(current: string, previous: string): Promise<void> {
  const names = await readdir(install.versionsDir).catch(() => [] as string[]);
  const keep = new Set([current, previous].slice(0, AGENT_VERSIONS_KEPT));
  for (const name of names) if (!keep.has(name) && !name.startsWith('.')) await rm(install.versionDir(name), { recursive: true, force: true });
}

/**
 * The guard (`plumb-agent --upgrade-guard ID`, run by systemd when the confirmation time is up):
 * unless the new agent confirmed, the previous one is started again, with the new one's last log
 * lines kept for the controller.
 */
export async function runGuard(stateDir: string, id: string): Promise<void> {
  const pending = await readRecord(upgradeFiles(stateDir).pending);
  if (!pending || pending.id !== id || !(await claim(stateDir))) return;
  const since = `@${Math.floor(Date.parse(pending.startedAt) / 1000)}`;
  const journal = await execa('journalctl', ['-u', install.unit, '--since', since, '-o', 'cat', '--no-pager', '-n', '20'], { reject: false, timeout: 30_000 });
  const lines = journal.stdout.split('\n').filter((l) => l.trim() !== '');
  await finishRollback(stateDir, pending, `agent ${pending.to} did not confirm within ${Math.round(AGENT_CONFIRM_TIMEOUT_MS / 1000)} s`, lines);
  await switchLink(install.current, `versions/${pending.from}`);
  await rm(install.trialDropIn, { force: true });
  await systemctl(['daemon-reload']);
  await execa('systemctl', ['reset-failed', install.unit], { reject: false });
  await systemctl(['restart', install.unit]);
}

/** Sorts a version against the running one: what an upgrade request is. */
export function direction(running: string, wanted: string): 'same' | 'up' | 'down' {
  const c = compareVersions(wanted, running);
  return c === 0 ? 'same' : c > 0 ? 'up' : 'down';
}
