import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, TomlError } from 'smol-toml';
import * as z from 'zod';
import { ApiName, EnvKey, EnvValue, MemoryLimit, PlumbError, UrlPath, ValidationError, WorkerCount } from '@plumb/shared';
import type { DeployOptions } from '../commands/deploy.js';

export const PLUMB_TOML = 'plumb.toml';

/**
 * `plumb.toml` beside the API: what `plumb deploy` would otherwise need as flags. Nothing secret
 * belongs here (it travels with the code): secrets stay in --env on the command line.
 */
export const PlumbToml = z.strictObject({
  name: ApiName.optional(),
  path: UrlPath.optional(),
  workers: WorkerCount.optional(),
  memory: MemoryLimit.optional(),
  health_path: UrlPath.optional(),
  droplet: z.string().min(1).optional(),
  env: z.record(EnvKey, EnvValue).optional(),
});
export type PlumbToml = z.infer<typeof PlumbToml>;

/** DIR/plumb.toml, checked; an empty object when there is none. */
export async function readPlumbToml(dir: string): Promise<PlumbToml> {
  const file = path.join(dir, PLUMB_TOML);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ValidationError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    const where = err instanceof TomlError ? ` (line ${err.line})` : '';
    throw new ValidationError(`${file} is not valid TOML${where}: ${(err as Error).message.split('\n')[0]}`);
  }
  const parsed = PlumbToml.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ValidationError(`invalid ${file}: ${issue?.path.join('.') || 'it'}: ${issue?.message ?? 'not accepted'}`, 'keys: name, path, workers, memory, health_path, droplet, [env]');
  }
  return parsed.data;
}

/** A plumb.toml to start from: the name, and the other keys commented out with their defaults. */
export function plumbTomlTemplate(name: string): string {
  return `# plumb deploy reads this file; flags given on the command line win over it.
# Nothing secret here: it travels with the code. Give secrets with --env KEY=VALUE.
name = "${name}"
# path = "/${name}"          # URL path (default: /NAME)
# workers = 1               # R processes (1 to 16)
# memory = "512M"           # memory limit per R worker
# health_path = "/health"   # must answer 2xx before traffic switches (default: any answer below 500 at /)
# droplet = "plumb-abc123"  # which droplet, when plumb knows several

[env]
# MODE = "production"
`;
}

/** Writes DIR/plumb.toml for `plumb init`; an existing one is kept. */
export async function writePlumbToml(dir: string, name: string): Promise<string> {
  const file = path.join(dir, PLUMB_TOML);
  try {
    await writeFile(file, plumbTomlTemplate(name), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new PlumbError('INVALID_INPUT', `${file} exists already`, 'edit it, or remove it and run plumb init again');
    throw err;
  }
  return file;
}

/** The deploy's options: each flag given wins over plumb.toml; env merges, the command line's value winning per key. */
export function deployOptionsWith(file: PlumbToml, flags: Omit<DeployOptions, 'name'> & { name?: string | undefined }): DeployOptions {
  const name = flags.name ?? file.name;
  if (name === undefined) throw new ValidationError('no API name: give --name NAME', `or write one in ${PLUMB_TOML} (plumb init makes it)`);
  return {
    ...flags,
    name,
    path: flags.path ?? file.path,
    workers: flags.workers ?? file.workers,
    memory: flags.memory ?? file.memory,
    healthPath: flags.healthPath ?? file.health_path,
    droplet: flags.droplet ?? file.droplet,
    env: [...Object.entries(file.env ?? {}).map(([k, v]) => `${k}=${v}`), ...(flags.env ?? [])],
  };
}
