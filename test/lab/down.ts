import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { alive, run, sleep, tryRun } from './host.js';
import { dataDir, runDir } from './paths.js';
import { sweepLimits } from './droplets/cgroup.js';
import { teardown } from './droplets/droplet.js';
import { sweepNet } from './droplets/network.js';
import { containerInit, findNspawn } from './droplets/processes.js';
import { listRecords } from './droplets/records.js';
import { listInstances, removeInstance } from './instances.js';
import { sweepAcme } from './acme.js';

/**
 * Removes what labs left on this host: their processes, droplets, mounts, namespaces, NAT rules
 * and cgroups. With an instance, only that lab's; without, everything any lab made. Idempotent:
 * a second run finds nothing and succeeds. Returns what it removed, for the person to read.
 */
export async function labDown(instance?: string): Promise<string[]> {
  const removed: string[] = [];
  const instances = (await listInstances()).filter((i) => instance === undefined || i.instance === instance);
  for (const lab of instances) {
    if (lab.pid !== process.pid && alive(lab.pid)) {
      await stopProcess(lab.pid);
      removed.push(`lab process ${lab.pid} (${lab.instance})`);
    }
    await sweepAcme(path.join(lab.stateDir, 'acme'));
    await rm(lab.stateDir, { recursive: true, force: true });
    await removeInstance(lab.instance);
  }
  for (const record of await listRecords(instance)) {
    await teardown(record);
    removed.push(`droplet ${record.name} (${record.key})`);
  }
  if (instance !== undefined) {
    await rm(path.join(dataDir(), instance), { recursive: true, force: true });
    return removed;
  }
  for (const nspawn of await findNspawn()) {
    const init = await containerInit(nspawn.pid);
    if (init !== undefined) process.kill(init, 'SIGKILL');
    else process.kill(nspawn.pid, 'SIGKILL');
    removed.push(`nspawn process ${nspawn.pid}`);
  }
  for (const mount of await labMounts()) {
    if (!(await tryRun('umount', [mount]))) await run('umount', ['--lazy', mount]);
    removed.push(`mount ${mount}`);
  }
  removed.push(...(await sweepNet()), ...(await sweepLimits()));
  await rm(dataDir(), { recursive: true, force: true });
  await rm(runDir(), { recursive: true, force: true });
  return removed;
}

/** Mounts under the lab's data directory, deepest first. */
async function labMounts(): Promise<string[]> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  const prefix = `${dataDir()}/`;
  return mounts
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((target) => target.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/** A lab process tears its own droplets down on SIGTERM; give it time before pulling the plug. */
async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 600 && alive(pid); i++) await sleep(100);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}
