import { readdir, readFile } from 'node:fs/promises';

/** Host processes, read from /proc: how the lab finds nspawn processes it did not start itself. */
export interface HostProcess {
  pid: number;
  argv: string[];
}

export async function listProcesses(): Promise<HostProcess[]> {
  const entries = await readdir('/proc');
  const processes: HostProcess[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const raw = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (raw) processes.push({ pid: Number(entry), argv: raw.split('\0').filter(Boolean) });
  }
  return processes;
}

/** systemd-nspawn processes running the given machine name (or any lab machine when omitted). */
export async function findNspawn(machine?: string): Promise<HostProcess[]> {
  const match = (arg: string) => (machine === undefined ? arg.startsWith('--machine=lab-') : arg === `--machine=${machine}`);
  return (await listProcesses()).filter((p) => p.argv[0]?.endsWith('systemd-nspawn') && p.argv.some(match));
}

/** The container's PID 1: the child of systemd-nspawn running systemd. */
export async function containerInit(nspawnPid: number): Promise<number | undefined> {
  const children = await readFile(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').catch(() => '');
  for (const child of children.trim().split(/\s+/).filter(Boolean).map(Number)) {
    const comm = (await readFile(`/proc/${child}/comm`, 'utf8').catch(() => '')).trim();
    if (comm === 'systemd' || comm === 'init') return child;
  }
  return undefined;
}
