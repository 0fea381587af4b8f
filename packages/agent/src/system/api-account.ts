import { chmod, chown, lstat, mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { apiUser, PlumbError } from '@plumb/shared';
import { log } from '../log.js';
import { layout } from './layout.js';

/**
 * Each API runs as its own system user (`apiUser(NAME)`, made here by root), so one API cannot
 * read another's files, environment or processes. On the droplet:
 *
 *   /var/plumber/                 root:root  0755
 *   /var/plumber/NAME/            root:API   0750  no other API looks in
 *   /var/plumber/NAME/releases/   root:root  0755
 *   .../releases/ID/ and its dirs root:API   1770  the API adds files; the sticky bit keeps the
 *                                                   shipped ones (root, 0644) as uploaded
 *   /var/plumber/NAME/data/       API:API    0700  kept across releases
 *   /var/plumber/NAME/home/       API:API    0700  HOME, kept across releases
 */

export interface ApiAccount {
  user: string;
  uid: number;
  gid: number;
}

/** Every directory of a release, once the API may write beside its code. */
export const RELEASE_DIR_MODE = 0o1770;

/** useradd and userdel lock /etc/passwd and fail if it is held: one at a time. */
let usersQueue: Promise<unknown> = Promise.resolve();
function oneAtATime<T>(work: () => Promise<T>): Promise<T> {
  const run = usersQueue.then(work, work);
  usersQueue = run.catch(() => undefined);
  return run;
}

async function lookup(user: string): Promise<ApiAccount | undefined> {
  const found = await execa('getent', ['passwd', user], { reject: false });
  if (found.exitCode !== 0) return undefined;
  const [, , uid, gid] = found.stdout.split(':');
  return { user, uid: Number(uid), gid: Number(gid) };
}

/**
 * Each API's user's uid, for the nftables rules that keep the APIs apart (render/nat.ts): read
 * from /etc/passwd, where useradd --system writes, at once for all (a routing change is on the
 * deploy's path). An API whose user is missing has no entry: its ports stay closed to API users.
 */
export async function apiUids(names: string[]): Promise<Map<string, number>> {
  const byUser = new Map<string, number>();
  for (const line of (await readFile(layout.passwd, 'utf8').catch(() => '')).split('\n')) {
    const [user = '', , uid = ''] = line.split(':');
    if (/^\d+$/.test(uid)) byUser.set(user, Number(uid));
  }
  const uids = new Map<string, number>();
  for (const name of names) {
    const uid = byUser.get(apiUser(name));
    if (uid !== undefined) uids.set(name, uid);
  }
  return uids;
}

/** The API's user, made if missing; then its directories as above. Idempotent. */
export async function ensureApiAccount(name: string): Promise<ApiAccount> {
  const account = await ensureApiUser(name);
  await ensureDir(layout.apisRoot, 0, 0, 0o755);
  await ensureDir(layout.apiDir(name), 0, account.gid, 0o750);
  await ensureDir(layout.releasesDir(name), 0, 0, 0o755);
  for (const dir of [layout.dataDir(name), layout.homeDir(name)]) await ensureOwnedTree(dir, account);
  return account;
}

async function ensureApiUser(name: string): Promise<ApiAccount> {
  const user = apiUser(name);
  return oneAtATime(async () => {
    const found = await lookup(user);
    if (found) return found;
    const made = await execa('useradd', ['--system', '--no-create-home', '--home-dir', layout.homeDir(name), '--shell', '/usr/sbin/nologin', '--user-group', '--comment', `plumb API ${name}`, user], { reject: false });
    const account = await lookup(user);
    if (!account) throw new PlumbError('API_USER', `could not create the system user ${user} for the API ${name}: ${(made.stderr || made.stdout).trim()}`);
    log.info('api user created', { api: name, user, uid: account.uid });
    return account;
  });
}

/** After `plumb remove` without --keep-files: the user goes with the files it owned. */
export async function removeApiUser(name: string): Promise<void> {
  const user = apiUser(name);
  await oneAtATime(async () => {
    if (!(await lookup(user))) return;
    const removed = await execa('userdel', [user], { reject: false });
    if (removed.exitCode !== 0) log.warn('could not remove the api user', { api: name, user, error: removed.stderr.trim() });
  });
}

async function ensureDir(dir: string, uid: number, gid: number, mode: number): Promise<void> {
  await mkdir(dir, { mode }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new PlumbError('API_DIR', `${dir} is not a directory`, 'move it away and run the command again');
  if (st.uid !== uid || st.gid !== gid) await chown(dir, uid, gid);
  if ((st.mode & 0o7777) !== mode) await chmod(dir, mode);
}

/**
 * A directory the API owns with all it holds. Made for it, or taken over from the user APIs ran
 * as before each had its own (`plumber`): then everything inside changes owner (links are not
 * followed).
 */
async function ensureOwnedTree(dir: string, account: ApiAccount): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new PlumbError('API_DIR', `${dir} is not a directory`, 'move it away and run the command again');
  if (st.uid !== account.uid || st.gid !== account.gid) {
    await execa('chown', ['-R', '--no-dereference', `${account.uid}:${account.gid}`, dir]);
    log.info('api directory handed to its user', { dir, user: account.user });
  }
  if ((st.mode & 0o7777) !== 0o700) await chmod(dir, 0o700);
}

/**
 * Lets the API write beside its code in a release: each directory the bundle shipped becomes
 * root:API 1770. Only real directories owned by root are touched and links are never followed,
 * so what the API made there itself (its own, under UMask 0077) stays as it is. Does nothing to a
 * release already opened.
 */
export async function openRelease(releaseDir: string, account: ApiAccount): Promise<void> {
  const top = await lstat(releaseDir);
  if (top.gid === account.gid && (top.mode & 0o7777) === RELEASE_DIR_MODE) return;
  const pending = [releaseDir];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    const st = await lstat(dir);
    if (!st.isDirectory() || st.uid !== 0) continue;
    for (const entry of await readdir(dir, { withFileTypes: true })) if (entry.isDirectory()) pending.push(path.join(dir, entry.name));
    // The release's own directory last: once it is opened, the release counts as done.
    if (dir !== releaseDir) await openDir(dir, account);
  }
  await openDir(releaseDir, account);
}

async function openDir(dir: string, account: ApiAccount): Promise<void> {
  await chown(dir, 0, account.gid);
  await chmod(dir, RELEASE_DIR_MODE);
}
