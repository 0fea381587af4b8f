import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ApiName, checkInput, ValidationError } from '@plumb/shared';
import { writePlumbToml } from '../api-dir/plumb-toml.js';

export interface InitResult {
  file: string;
  name: string;
}

/** `plumb init`: a plumb.toml in DIR, named after the directory unless --name says otherwise. */
export async function init(opts: { dir: string; name?: string }): Promise<InitResult> {
  const dir = path.resolve(opts.dir);
  const isDir = await stat(dir).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new ValidationError(`${opts.dir} is not a directory`);
  const name = checkInput(ApiName, opts.name ?? path.basename(dir).toLowerCase(), 'API name', opts.name === undefined ? `the directory's name is not one: give --name NAME` : undefined);
  return { file: await writePlumbToml(dir, name), name };
}
