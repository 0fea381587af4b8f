import * as z from 'zod';
import { lazySchema } from './lazy.js';

/**
 * The version of the controller-agent protocol. A controller talks to an agent of its own
 * protocol only; for any other it says which side to upgrade. Raise it with every change of a
 * message that an agent or a controller of the previous version would not parse. The hello's
 * head and the `upgrade` request never change (protocol.ts), so any plumb can upgrade any agent
 * that has `upgrade` at all (protocol 1 on).
 */
export const PROTOCOL_VERSION = 1;

/** A release version, semver's MAJOR.MINOR.PATCH with an optional pre-release: also a directory name on the droplet. */
export const AgentVersion = lazySchema(() => z
  .string()
  .max(64)
  .regex(/^\d{1,9}\.\d{1,9}\.\d{1,9}(?:-[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)?$/, 'a version is MAJOR.MINOR.PATCH, e.g. 0.2.0 or 0.2.0-rc.1'));

/**
 * Orders two versions as semver does (a pre-release comes before its release; its dot parts
 * compare numerically when both are numbers): negative when a < b, 0 when equal, positive when a > b.
 */
export function compareVersions(a: string, b: string): number {
  const [coreA = '', preA] = splitOnce(a, '-');
  const [coreB = '', preB] = splitOnce(b, '-');
  const numsA = coreA.split('.').map(Number);
  const numsB = coreB.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (numsA[i] ?? 0) - (numsB[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (preA === undefined || preB === undefined) return preA === preB ? 0 : preA === undefined ? 1 : -1;
  const partsA = preA.split('.');
  const partsB = preB.split('.');
  for (let i = 0; i < Math.max(partsA.length, partsB.length); i++) {
    const x = partsA[i];
    const y = partsB[i];
    if (x === undefined || y === undefined) return x === undefined ? -1 : 1;
    if (x === y) continue;
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    if (!Number.isNaN(nx) && !Number.isNaN(ny)) return Math.sign(nx - ny);
    if (!Number.isNaN(nx) || !Number.isNaN(ny)) return Number.isNaN(nx) ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return 0;
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}
