import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { dropletRecordsDir } from '../paths.js';

/**
 * What the lab made for one droplet, written before it makes anything, so that a later
 * `lab down` can undo it even when the process that made it died half-way.
 */
export interface DropletRecord {
  /** `${instance}-${id}`: unique on the host. */
  key: string;
  instance: string;
  id: number;
  name: string;
  index: number;
  /** Holds upper/, work/, root/ (the overlay mount) and console.log. */
  dir: string;
  /** systemd-nspawn's machine name, which is how its processes are found again. */
  machine: string;
  /** A process the lab started for it outside nspawn (a balancer's HAProxy): killed on teardown. */
  pidFile?: string;
}

const fileOf = (key: string) => path.join(dropletRecordsDir(), `${key}.json`);

export async function saveRecord(record: DropletRecord): Promise<void> {
  await mkdir(dropletRecordsDir(), { recursive: true });
  await writeFile(fileOf(record.key), JSON.stringify(record, null, 2));
}

export async function removeRecord(key: string): Promise<void> {
  await rm(fileOf(key), { force: true });
}

export async function listRecords(instance?: string): Promise<DropletRecord[]> {
  const files = await readdir(dropletRecordsDir()).catch(() => [] as string[]);
  const records: DropletRecord[] = [];
  for (const file of files.filter((f) => f.endsWith('.json'))) {
    const text = await readFile(path.join(dropletRecordsDir(), file), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const record = JSON.parse(text) as DropletRecord;
    if (instance === undefined || record.instance === instance) records.push(record);
  }
  return records;
}
