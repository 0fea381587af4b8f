import { lstat, readdir, readFile, readlink, rename } from 'node:fs/promises';
import path from 'node:path';
import { ApiName, ReleaseId } from '@plumb/shared';
import type { z } from 'zod';
import { AgentState, type ApiRecord, type Release } from './state.js';
import { SECRETS_MARK } from './render/systemd.js';

type ApiInput = z.input<typeof ApiRecord>;

/**
 * What the agent does when state.json cannot be read as a state (a bad disk, a hand edit): the
 * file is set aside, never overwritten, and the state is rebuilt from the last good copy
 * (state.json.backup, written after every save) corrected by what is on disk, because the release
 * directories, the `current` links and the workers' env files are written by the same operations
 * and are the truth of what serves. Settings the disk does not hold (URL path, forward, HTTPS,
 * webhook) come from the last good copy, or else fall back to their defaults.
 */
export interface RecoveryRoots {
  /** /var/plumber: one directory per API. */
  apiRoot: string;
  /** /var/lib/plumb/instances: NAME@PORT.env per worker. */
  instancesDir: string;
}

export interface Recovered {
  state: AgentState;
  /** Where the damaged file was put. */
  keptAs: string;
  /** One line for the event log: what the state was rebuilt from. */
  detail: string;
}

export async function recoverState(file: string, problem: string, enrolled: boolean, roots: RecoveryRoots): Promise<Recovered> {
  const keptAs = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '')}`;
  await rename(file, keptAs);
  const previous = await readState(`${file}.backup`);
  const base: AgentState = previous ?? AgentState.parse({ version: 1, enrolledAt: null });
  const apis: Record<string, ApiInput> = {};
  const workers = await workersOnDisk(roots.instancesDir);
  for (const name of await apisOnDisk(roots.apiRoot)) {
    // Files alone are not an API: `remove --keep-files` leaves them. One the last good copy knows,
    // or one with workers' env files (deployed since that copy), is.
    if (!base.apis[name] && !workers.has(name)) continue;
    const api = await apiFromDisk(name, roots.apiRoot, workers, base.apis[name]);
    if (api) apis[name] = api;
  }
  const state = AgentState.parse({
    ...base,
    enrolledAt: base.enrolledAt ?? (enrolled ? new Date().toISOString() : null),
    apis,
    forward: base.forward !== null && base.forward in apis ? base.forward : null,
  });
  const names = Object.keys(apis);
  const detail =
    `state.json was damaged (${problem}); kept as ${path.basename(keptAs)} and rebuilt from ` +
    `${previous ? 'the last good copy and ' : ''}what is on disk: ${names.length === 0 ? 'no APIs' : names.join(', ')}` +
    (previous ? '' : ' (URL paths reset to /NAME; forward, HTTPS and webhook settings must be given again)');
  return { state, keptAs, detail };
}

/** A state file's content, or undefined when it is missing or not a valid state. */
export async function readState(file: string): Promise<AgentState | undefined> {
  try {
    const parsed = AgentState.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

async function apisOnDisk(apiRoot: string): Promise<string[]> {
  const entries = await readdir(apiRoot, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && ApiName.safeParse(e.name).success).map((e) => e.name).sort();
}

interface WorkerOnDisk {
  port: number;
  release: string;
  library?: string | null;
  env: Record<string, string>;
  secrets: Record<string, string>;
}

/** Workers by API, from their env files: the port is in the name, the release and --env inside. */
async function workersOnDisk(instancesDir: string): Promise<Map<string, WorkerOnDisk[]>> {
  const byApi = new Map<string, WorkerOnDisk[]>();
  for (const entry of await readdir(instancesDir).catch(() => [] as string[])) {
    const match = /^([a-z][a-z0-9_-]*)@(\d+)\.env$/.exec(entry);
    if (!match || !ApiName.safeParse(match[1]).success) continue;
    const parsed = parseInstanceEnv(await readFile(path.join(instancesDir, entry), 'utf8').catch(() => ''));
    if (!parsed) continue;
    const list = byApi.get(match[1]!) ?? [];
    list.push({ port: Number(match[2]), ...parsed });
    byApi.set(match[1]!, list);
  }
  return byApi;
}

/** The inverse of render/systemd.ts renderInstanceEnv: the release id, its R library generation, the user's --env and the API's secrets. */
export function parseInstanceEnv(text: string): { release: string; library?: string | null; env: Record<string, string>; secrets: Record<string, string> } | undefined {
  let release: string | undefined;
  let library: string | null | undefined;
  const plain: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  let env = plain;
  for (const line of text.split('\n')) {
    if (line === SECRETS_MARK) env = secrets;
    const dir = /^PLUMB_RELEASE_DIR=\/var\/plumber\/[^/]+\/releases\/([^/]+)$/.exec(line);
    if (dir) release = dir[1];
    const lib = /^R_LIBS=(?:\/var\/plumber\/[^/]+\/library\/(g-[0-9a-f]{16}))?$/.exec(line);
    if (lib) library = lib[1] ?? null;
    const pair = /^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"$/.exec(line);
    if (pair) env[pair[1]!] = pair[2]!.replace(/\\([\\"`$])/g, '$1');
  }
  return release !== undefined && ReleaseId.safeParse(release).success ? { release, ...(library === undefined ? {} : { library }), env: plain, secrets } : undefined;
}

async function apiFromDisk(name: string, apiRoot: string, workers: Map<string, WorkerOnDisk[]>, known: ApiRecord | undefined): Promise<ApiInput | undefined> {
  const releasesDir = path.join(apiRoot, name, 'releases');
  const ids = (await readdir(releasesDir).catch(() => [] as string[])).filter((id) => ReleaseId.safeParse(id).success).sort();
  const current = path.basename(await readlink(path.join(apiRoot, name, 'current')).catch(() => ''));
  if (!ids.includes(current)) return undefined;
  // A worker the last good copy had draining stays draining, even on the live release (restart and
  // scale replace workers on one release); any other worker not on the live release is drained now.
  const onDisk = (workers.get(name) ?? []).sort((a, b) => a.port - b.port);
  const wasDraining = new Map((known?.draining ?? []).map((w) => [w.port, w.until]));
  const live = onDisk.filter((w) => w.release === current && !wasDraining.has(w.port));
  const draining = onDisk.filter((w) => !live.includes(w)).map((w) => ({ port: w.port, release: w.release, until: wasDraining.get(w.port) ?? new Date().toISOString() }));
  // Secrets are marked in a worker's env file; a file from before the mark mixes them with --env,
  // and then the last good copy's secret names tell them apart.
  const secretKeys = new Set(Object.keys(known?.secrets ?? {}));
  const withoutSecrets = (env: Record<string, string>) => Object.fromEntries(Object.entries(env).filter(([key]) => !secretKeys.has(key)));
  const envOf = (id: string) => {
    const fromDisk = (workers.get(name) ?? []).find((w) => w.release === id)?.env;
    return fromDisk ? withoutSecrets(fromDisk) : (known?.releases.find((r) => r.id === id)?.env ?? {});
  };
  const releases: Release[] = [];
  for (const id of ids) {
    const knownRelease = known?.releases.find((r) => r.id === id);
    const createdAt = knownRelease?.createdAt ?? (await lstat(path.join(releasesDir, id))).mtime.toISOString();
    const library = knownRelease ? knownRelease.library : (workers.get(name) ?? []).find((w) => w.release === id)?.library;
    releases.push({ id, createdAt, files: knownRelease?.files ?? 0, bytes: knownRelease?.bytes ?? 0, env: envOf(id), packages: knownRelease?.packages ?? [], ...(library === undefined ? {} : { library }) });
  }
  const entrypoint = await readdir(path.join(releasesDir, current)).then((files) => (files.includes('entrypoint.R') ? 'entrypoint.R' : 'plumber.R'));
  return {
    // Rebuilt with no good copy: the default a deploy gives, not a record from before auto ('never').
    ...(known ?? { name, path: `/${name}`, healthPath: null, deployedAt: releases.at(-1)!.createdAt, secrets: live[0]?.secrets ?? {}, sparePolicy: 'auto' as const }),
    entrypoint,
    releases,
    current,
    workers: live.map((w) => ({ port: w.port, release: w.release })),
    draining,
  };
}
