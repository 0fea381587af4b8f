import { readdir } from 'node:fs/promises';
import { execa } from 'execa';
import { PlumbError } from '@plumb/shared';
import { busEnable, busStart, busUnitStates } from './systemd-bus.js';

/** systemctl, always with argument arrays. Unit names come from validated API names and ports. */
async function systemctl(...args: string[]): Promise<string> {
  const result = await execa('systemctl', args, { reject: false, timeout: 120_000 });
  if (result.exitCode !== 0) {
    throw new PlumbError('SYSTEMD', `systemctl ${args.join(' ')} failed: ${(result.stderr || result.stdout).trim().split('\n').slice(-2).join(' ')}`);
  }
  return result.stdout;
}

// A process, not the bus: a reload can take minutes (generators rerun; systemctl waits up to 180 s),
// and a call retried on a new connection would reload twice. It runs only when a unit file changed.
export const daemonReload = () => systemctl('daemon-reload');
// Over D-Bus when it answers (no process), else systemctl.
export const start = async (unit: string) => void ((await busStart(unit)) || (await systemctl('start', '--no-block', unit)));
/** A restart asked for on purpose: systemd's start rate limit (meant for crash loops) must not refuse it. */
export async function restart(unit: string): Promise<void> {
  await execa('systemctl', ['reset-failed', unit], { reject: false, timeout: 30_000 });
  await systemctl('restart', unit);
}
export const stop = (unit: string) => systemctl('stop', unit);
export const enable = (unit: string) => systemctl('enable', unit);
export const enableNow = (unit: string) => systemctl('enable', '--now', unit);
/**
 * Started at boot, for a unit already running: only the wants link is made. The manager need not
 * reload (it reads the links at boot), and a daemon-reload per worker was the slowest part of
 * the switch step.
 */
export const enableAtBoot = async (unit: string) => void ((await busEnable(unit)) || (await systemctl('enable', '--no-reload', unit)));
export const reload = (unit: string) => systemctl('reload', unit);
export const isActive = async (unit: string) => (await execa('systemctl', ['is-active', '--quiet', unit], { reject: false, timeout: 30_000 })).exitCode === 0;

/** Stops and disables a unit that may not exist or may have failed; never throws. */
export async function stopAndDisable(unit: string): Promise<void> {
  // Two calls: `disable --now` stops nothing when the unit's file is gone already.
  await execa('systemctl', ['stop', unit], { reject: false, timeout: 120_000 });
  await execa('systemctl', ['disable', unit], { reject: false, timeout: 120_000 });
  await execa('systemctl', ['reset-failed', unit], { reject: false, timeout: 30_000 });
}

export interface UnitState {
  active: string;
  sub: string;
  result: string;
  restarts: number;
  pid: number | null;
  since: string | null;
  /** A job (a start, a stop) is queued for it: an inactive unit with one has not run yet. */
  queued: boolean;
}

const SHOWN = 'ActiveState,SubState,Result,NRestarts,MainPID,ActiveEnterTimestamp,Job';

export async function unitState(unit: string): Promise<UnitState> {
  return (await unitStates([unit])).get(unit)!;
}

/**
 * Several units' states: over D-Bus on the agent's open connection to systemd (no process), else
 * from one `systemctl show`, which prints a block of properties per unit, in the order asked,
 * blocks parted by a blank line.
 */
export async function unitStates(units: readonly string[]): Promise<Map<string, UnitState>> {
  const states = new Map<string, UnitState>();
  if (units.length === 0) return states;
  const viaBus = await busUnitStates(units);
  if (viaBus) return viaBus;
  const out = await systemctl('show', `--property=${SHOWN}`, '--', ...units);
  const blocks = out.split(/\n\n+/);
  units.forEach((unit, i) => states.set(unit, parseShow(blocks[i] ?? '')));
  return states;
}

function parseShow(block: string): UnitState {
  const props = new Map(block.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const));
  const pid = Number(props.get('MainPID') ?? 0);
  return {
    active: props.get('ActiveState') ?? 'unknown',
    sub: props.get('SubState') ?? 'unknown',
    result: props.get('Result') ?? 'unknown',
    restarts: Number(props.get('NRestarts') ?? 0),
    pid: pid > 0 ? pid : null,
    since: props.get('ActiveEnterTimestamp') || null,
    queued: (props.get('Job') ?? '') !== '',
  };
}

/** Where `systemctl enable` links the units started at boot (their [Install] WantedBy=). */
const BOOT_WANTS = '/etc/systemd/system/multi-user.target.wants';

/** Units matching `pattern` that systemd has loaded (running, failed, stopping) or starts at boot. */
export async function unitsMatching(pattern: RegExp, glob: string): Promise<Set<string>> {
  const loaded = await systemctl('list-units', '--all', '--plain', '--no-legend', '--full', glob);
  const names = [...loaded.split('\n').map((line) => line.trim().split(/\s+/)[0] ?? ''), ...(await enabledAtBoot())];
  return new Set(names.filter((unit) => pattern.test(unit)));
}

/** Units `systemctl enable` has linked to start at boot. */
export async function enabledAtBoot(): Promise<Set<string>> {
  return new Set(await readdir(BOOT_WANTS).catch(() => [] as string[]));
}
