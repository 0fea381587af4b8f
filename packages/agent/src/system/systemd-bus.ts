import { PlumbError, SYSTEMD_BUS_TIMEOUT_MS } from '@plumb/shared';
import { log } from '../log.js';
import { DBusClosedError, DBusConnection, DBusError, type DBusValue } from './dbus.js';
import type { UnitState } from './systemd.js';

/**
 * Asks systemd over D-Bus on one long-lived connection instead of a `systemctl` process per
 * question (a process costs tens of ms of the droplet's CPU; a pipelined question on an open
 * connection well under one). systemd's private socket only: it is what `systemctl` itself uses as
 * root, it does not go away when dbus-daemon restarts, and systemd is the only peer on it. On the
 * system bus any local user could send the root agent a message posing as a reply (serials are
 * easy to guess), and dbus-daemon caps the replies one connection may await; as root, `systemctl`
 * cannot work without the private socket either, so the bus would add nothing but those.
 */
const SOCKETS = [{ path: '/run/systemd/private', hello: false }] as const;

let current: DBusConnection | undefined;
let connecting: Promise<DBusConnection> | undefined;
/** Whether the last attempt fell back to systemctl: said once in the log, not at every question. */
let fellBack = false;

async function open(): Promise<DBusConnection> {
  const failures: string[] = [];
  for (const socket of SOCKETS) {
    try {
      return await DBusConnection.open(socket.path, { hello: socket.hello, timeoutMs: SYSTEMD_BUS_TIMEOUT_MS });
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  throw new DBusClosedError(failures.join('; '));
}

/** The open connection, or one being opened: questions asked together share it, never open two. */
function connection(): Promise<DBusConnection> {
  if (current && !current.closed) return Promise.resolve(current);
  connecting ??= open()
    .then((opened) => (current = opened))
    .finally(() => (connecting = undefined));
  return connecting;
}

/**
 * Runs `ask` on the connection, on a new one if the old one dropped (systemd re-executed, dbus
 * restarted), and answers undefined when systemd cannot be reached over D-Bus at all, so the caller
 * asks `systemctl` instead.
 */
async function onBus<T>(ask: (bus: DBusConnection) => Promise<T>): Promise<T | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const answer = await ask(await connection());
      if (fellBack) log.info('asking systemd over D-Bus again');
      fellBack = false;
      return answer;
    } catch (error) {
      if (!(error instanceof DBusClosedError)) throw error;
      if (attempt === 1) {
        if (!fellBack) log.warn('systemd cannot be reached over D-Bus; asking systemctl instead', { error: error.message });
        fellBack = true;
      }
    }
  }
  return undefined;
}

/** systemd's object path for a unit (bus_label_escape): every byte but [A-Za-z0-9] as _xx, a leading digit too. */
export function unitPath(unit: string): string {
  let label = '';
  for (const [i, byte] of [...Buffer.from(unit, 'utf8')].entries()) {
    const c = String.fromCharCode(byte);
    label += /[A-Za-z]/.test(c) || (/[0-9]/.test(c) && i > 0) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return `/org/freedesktop/systemd1/unit/${label}`;
}

const MANAGER = { destination: 'org.freedesktop.systemd1', path: '/org/freedesktop/systemd1', interface: 'org.freedesktop.systemd1.Manager' } as const;

/**
 * What ListUnitsByNames does not carry, asked per unit; the Service interface has the first three
 * (a unit that is not a service lacks them, and `systemctl show` leaves them out too).
 */
const ASKED = [
  ['org.freedesktop.systemd1.Service', 'Result'],
  ['org.freedesktop.systemd1.Service', 'NRestarts'],
  ['org.freedesktop.systemd1.Service', 'MainPID'],
  ['org.freedesktop.systemd1.Unit', 'ActiveEnterTimestamp'],
] as const;

/** Errors that say a unit has no such property or interface: the value is absent, not unknown. */
const LACKING = new Set(['org.freedesktop.DBus.Error.UnknownProperty', 'org.freedesktop.DBus.Error.UnknownInterface', 'org.freedesktop.DBus.Error.UnknownObject', 'org.freedesktop.DBus.Error.InvalidArgs', 'org.freedesktop.systemd1.NoSuchUnit']);

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const two = (n: number) => String(n).padStart(2, '0');

/** A timestamp in µs since the epoch as `systemctl show` prints it on a UTC droplet; 0 is never. */
export function showTimestamp(usec: bigint): string | null {
  if (usec === 0n) return null;
  const d = new Date(Number(usec / 1000n));
  return `${DAYS[d.getUTCDay()]} ${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} UTC`;
}

/** ActiveState, SubState, Result, NRestarts, MainPID, ActiveEnterTimestamp, Job (id, path) as systemd sent them; undefined for one the unit lacks. */
export function toUnitState(values: readonly (DBusValue | undefined)[]): UnitState {
  const [active, sub, result, restarts, pid, since, job] = values;
  return {
    active: typeof active === 'string' ? active : 'unknown',
    sub: typeof sub === 'string' ? sub : 'unknown',
    result: typeof result === 'string' ? result : 'unknown',
    restarts: typeof restarts === 'number' ? restarts : 0,
    pid: typeof pid === 'number' && pid > 0 ? pid : null,
    since: typeof since === 'bigint' ? showTimestamp(since) : null,
    // Job is (job id, job path); id 0 is no job.
    queued: Array.isArray(job) && typeof job[0] === 'number' && job[0] !== 0,
  };
}

/**
 * Each unit's state: ListUnitsByNames (one call for every unit's active and sub state and job;
 * systemd loads a unit it has not, as `systemctl show` does, so an unknown unit reads inactive)
 * and the rest per unit, every call sent at once. Undefined when D-Bus cannot be reached.
 */
export function busUnitStates(units: readonly string[]): Promise<Map<string, UnitState> | undefined> {
  return onBus(async (bus) => {
    const listed = bus.call({ ...MANAGER, member: 'ListUnitsByNames', signature: 'as', body: [[...units]] });
    const asked = units.map((unit) =>
      Promise.all(
        ASKED.map(([iface, name]) =>
          bus
            .call({ destination: MANAGER.destination, path: unitPath(unit), interface: 'org.freedesktop.DBus.Properties', member: 'Get', signature: 'ss', body: [iface, name] })
            .then(
              ([value]) => value,
              (error: unknown) => {
                // A property or interface the unit lacks (not a service), as `systemctl show` leaves it
                // out; any other error means the answer cannot be trusted: systemctl is asked instead.
                if (error instanceof DBusError && LACKING.has(error.errorName)) return undefined;
                if (error instanceof DBusError) throw new DBusClosedError(`systemd answered ${error.errorName}: ${error.message}`);
                throw error;
              },
            ),
        ),
      ),
    );
    // (name, description, load, active, sub, following, path, job id, job type, job path) per unit, in the order asked.
    const [[rows], answers] = (await Promise.all([listed, Promise.all(asked)])) as [[DBusValue[][]], (DBusValue | undefined)[][]];
    return new Map(
      units.map((unit, i) => {
        const row = rows.find((r) => r[0] === unit);
        const [result, restarts, pid, since] = answers[i]!;
        // No row: systemd could not load it, which `systemctl show` prints as inactive/dead.
        return [unit, toUnitState([row?.[3] ?? 'inactive', row?.[4] ?? 'dead', result, restarts, pid, since, row ? [row[7]!, row[9]!] : undefined])];
      }),
    );
  });
}

/**
 * One call to systemd's manager. True when it was made; false when D-Bus cannot be reached (ask
 * `systemctl`); an error systemd answered becomes a PlumbError, as a failed `systemctl` does.
 */
async function managerCall(what: string, member: string, signature?: string, body?: readonly unknown[]): Promise<boolean> {
  try {
    const done = await onBus((bus) => bus.call({ ...MANAGER, member, ...(signature ? { signature, body: body ?? [] } : {}) }));
    return done !== undefined;
  } catch (error) {
    if (error instanceof DBusError) throw new PlumbError('SYSTEMD', `systemctl ${what} failed: ${error.message}`);
    throw error;
  }
}

/** `systemctl start --no-block`: queue the start job and return. */
export const busStart = (unit: string) => managerCall(`start --no-block ${unit}`, 'StartUnit', 'ss', [unit, 'replace']);
/** `systemctl enable --no-reload`: the [Install] links only, no reload. */
export const busEnable = (unit: string) => managerCall(`enable --no-reload ${unit}`, 'EnableUnitFiles', 'asbb', [[unit], false, false]);
