import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { instancesDir } from './paths.js';

/** A running lab (one `lab up`, or one test suite's lab): how other commands find and stop it. */
export interface InstanceRecord {
  instance: string;
  pid: number;
  apiUrl: string;
  controlUrl: string;
  token: string;
  agentUrl?: string;
  acmeDirectoryUrl?: string;
  acmeCaPath?: string;
  acmeDnsServer?: string;
  acmeDnsManagementUrl?: string;
  stateDir: string;
  startedAt: string;
}

const fileOf = (instance: string) => path.join(instancesDir(), `${instance}.json`);

export async function saveInstance(record: InstanceRecord): Promise<void> {
  await mkdir(instancesDir(), { recursive: true });
  await writeFile(fileOf(record.instance), JSON.stringify(record, null, 2), { mode: 0o600 });
}

export async function removeInstance(instance: string): Promise<void> {
  await rm(fileOf(instance), { force: true });
}

export async function listInstances(): Promise<InstanceRecord[]> {
  const files = await readdir(instancesDir()).catch(() => [] as string[]);
  const records: InstanceRecord[] = [];
  for (const file of files.filter((f) => f.endsWith('.json'))) {
    const text = await readFile(path.join(instancesDir(), file), 'utf8').catch(() => undefined);
    if (text !== undefined) records.push(JSON.parse(text) as InstanceRecord);
  }
  return records;
}
