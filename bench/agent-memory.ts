/**
 * Memory while a big bundle travels (issue 14: "receiving a 500 MB bundle adds under 32 MB"), on one
 * lab droplet (s-2vcpu-4gb): prints tables, asserts nothing. APIs with 100 MiB and 190 MiB of random
 * data (nothing compresses: plumb refuses a bundle over BUNDLE_MAX_BYTES, 200 MiB compressed, so 190
 * MiB is about the biggest that reaches the agent) are deployed whole, with one line changed (a
 * delta) and again with --full; then an API with 500 MiB, which is refused, from the user's side;
 * then a 500 MiB API that does reach the agent: letters of a 4-letter alphabet drawn at random
 * (a genome's FASTA, say: 2 bits a byte, about a quarter of it compressed), deployed whole and
 * with a line changed. `--compressible-only` runs that last API alone.
 * Per deploy: the agent's peak RSS (VmHWM, reset before each deploy through /proc/PID/clear_refs)
 * and its RSS after; the most bundle bytes that waited unread in the agent at once (its `bundle
 * received` log line); the `plumb` process's own peak RSS (GNU time's %M); bytes sent.
 * Memory does not depend on the machine's load, so this may run beside others' tests.
 * Run: after `npm run build`, `npx tsc -p bench && node bench/dist/bench/agent-memory.js`.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { AGENT_NODE_FLAGS, BUNDLE_MAX_BYTES } from '@plumb/shared';
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { PLUMB_CLI } from '../test/e2e/plumb.js';
import { benchDroplet } from './bench-droplet.js';

const MIB = 1024 * 1024;
const SIZES_MIB = [100, 190];
const REFUSED_MIB = 500;
const COMPRESSIBLE_MIB = 500;
const compressibleOnly = process.argv.includes('--compressible-only');

const ACGT = Buffer.from('ACGT');

/** 1 MiB of A, C, G and T drawn at random: 2 bits of entropy a byte. */
function bases(): Buffer {
  const chunk = randomBytes(MIB);
  for (let i = 0; i < chunk.length; i++) chunk[i] = ACGT[chunk[i]! & 3]!;
  return chunk;
}

/** An API whose data/model.bin holds `mib` MiB of random bytes (or random bases), written 1 MiB at a time. */
async function bigApi(version: string, mib: number, fill: () => Buffer = () => randomBytes(MIB)): Promise<string> {
  const dir = await apiDir(sumApi(version));
  await mkdir(path.join(dir, 'data'));
  const out = createWriteStream(path.join(dir, 'data/model.bin'));
  for (let i = 0; i < mib; i++) if (!out.write(fill())) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
  return dir;
}

interface Measured {
  what: string;
  exitCode: number;
  sentBytes: number;
  seconds: number;
  agentBeforeMiB: number;
  agentPeakMiB: number;
  agentAfterMiB: number;
  /** The agent's `bundle received` line: bytes, and the most that waited unread at once. */
  queuedPeakMiB: number;
  plumbPeakMiB: number;
  /** What the user read when it failed. */
  said: string;
}

const lab = await startLab();
const dirs: string[] = [];
try {
  const bench = await benchDroplet(lab, 'membench');
  const onDroplet = (argv: string[]) => lab.droplet(bench.id).exec(argv);
  const agentPid = await onDroplet(['systemctl', 'show', 'plumb-agent.service', '-p', 'MainPID', '--value']);
  const memory = async () => {
    const status = await onDroplet(['cat', `/proc/${agentPid}/status`]);
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024, anon: kib('RssAnon') / 1024, file: kib('RssFile') / 1024 };
  };
  // "5" resets the peak RSS (proc(5), clear_refs), so each deploy's peak is its own.
  const resetPeak = async () => onDroplet(['sh', '-c', `echo 5 > /proc/${agentPid}/clear_refs && echo ok || echo no`]);
  const idle = await memory();
  // The floor: node itself on the droplet, with the agent's flags, loading nothing (RSS after 2 s).
  const bareNode = await onDroplet(['sh', '-c', `node ${AGENT_NODE_FLAGS.join(' ')} -e 'setTimeout(() => {}, 10000)' & sleep 2; grep -E '^(VmRSS|RssAnon|RssFile):' /proc/$!/status; kill $!`]);
  const bareKib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(bareNode)?.[1] ?? NaN);
  const resettable = (await resetPeak()) === 'ok';
  const lastReceived = async () => {
    const lines = (await onDroplet(['sh', '-c', 'journalctl -u plumb-agent.service -o cat -n 200 --no-pager | grep \'"bundle received"\' | tail -n 1'])).trim();
    return lines ? (JSON.parse(lines) as { received_bytes: number; peak_queued_bytes: number }) : undefined;
  };

  async function measuredDeploy(what: string, dir: string, name: string, flags: string[] = []): Promise<Measured> {
    if (resettable) await resetPeak();
    const before = await memory();
    const started = performance.now();
    // GNU time's %M: the plumb process's maximum resident set, in KiB.
    const run = await execa('/usr/bin/time', ['-f', 'plumb-max-rss-kib=%M', process.execPath, PLUMB_CLI, 'deploy', dir, '--name', name, '--json', ...flags], { env: bench.user.env, reject: false, stdin: 'ignore' });
    const seconds = (performance.now() - started) / 1000;
    const plumbPeakMiB = Number(/plumb-max-rss-kib=(\d+)/.exec(run.stderr)?.[1] ?? NaN) / 1024;
    const after = await memory();
    const received = await lastReceived();
    let out: { upload?: { bytes: number }; error?: { code: string; message: string; hint?: string } };
    try {
      out = JSON.parse(run.stdout) as typeof out;
    } catch {
      throw new Error(`plumb deploy ${name} printed no JSON (exit ${run.exitCode}): ${run.stderr}`);
    }
    const said = out.error ? `${out.error.code}: ${out.error.message}${out.error.hint ? ` (${out.error.hint})` : ''}` : '';
    return { what, exitCode: run.exitCode ?? -1, sentBytes: out.upload?.bytes ?? received?.received_bytes ?? NaN, seconds, agentBeforeMiB: before.rss, agentPeakMiB: after.peak, agentAfterMiB: after.rss, queuedPeakMiB: (received?.peak_queued_bytes ?? NaN) / MIB, plumbPeakMiB, said };
  }

  const rows: Measured[] = [];
  /** A first deploy of `dir`, then a line changed (a delta), then with `--full` unless `full` is false. */
  async function threeDeploys(label: string, name: string, dir: string, full = true): Promise<void> {
    rows.push(await measuredDeploy(`${label}, first deploy (all of it)`, dir, name));
    await writeFile(path.join(dir, 'plumber.R'), sumApi(`${name}b`)['plumber.R']);
    rows.push(await measuredDeploy(`${label}, a line changed (delta)`, dir, name));
    if (!full) return;
    await writeFile(path.join(dir, 'plumber.R'), sumApi(`${name}c`)['plumber.R']);
    rows.push(await measuredDeploy(`${label}, a line changed, --full`, dir, name, ['--full']));
  }
  for (const mib of compressibleOnly ? [] : SIZES_MIB) {
    const name = `mem${mib}`;
    const dir = await bigApi(`${name}a`, mib);
    dirs.push(dir);
    await threeDeploys(`${mib} MiB API`, name, dir);
  }
  let refused: Measured | undefined;
  if (!compressibleOnly) {
    const refusedDir = await bigApi('huge', REFUSED_MIB);
    dirs.push(refusedDir);
    refused = await measuredDeploy(`${REFUSED_MIB} MiB API, first deploy (refused)`, refusedDir, 'huge');
    rows.push(refused);
  }
  const basesDir = await bigApi('bases', COMPRESSIBLE_MIB, bases);
  dirs.push(basesDir);
  await threeDeploys(`${COMPRESSIBLE_MIB} MiB API of random bases (compresses)`, 'bases', basesDir, false);
  const leftOnDroplet = await onDroplet(['sh', '-c', 'ls -d /var/plumber/huge 2>/dev/null; true']);
  const end = await memory();

  console.log(`\n### Memory while a big bundle travels (random data; the agent's peak reset before each deploy: ${resettable ? 'yes' : 'no, peaks are cumulative'})\n`);
  console.log('| deploy | exit | sent | took | agent RSS before | agent peak RSS (added) | agent RSS after | most waiting unread in the agent | `plumb` peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.what} | ${r.exitCode} | ${(r.sentBytes / MIB).toFixed(1)} MiB | ${r.seconds.toFixed(1)} s | ${r.agentBeforeMiB.toFixed(0)} MiB | ${r.agentPeakMiB.toFixed(0)} MiB (+${(r.agentPeakMiB - r.agentBeforeMiB).toFixed(0)}) | ${r.agentAfterMiB.toFixed(0)} MiB | ${r.queuedPeakMiB.toFixed(2)} MiB | ${r.plumbPeakMiB.toFixed(0)} MiB |`);
  }
  console.log(`\nagent idle after provision: RSS ${idle.rss.toFixed(0)} MiB (mapped files ${idle.file.toFixed(0)}, anonymous ${idle.anon.toFixed(0)}; peak so far ${idle.peak.toFixed(0)} MiB); at the end: RSS ${end.rss.toFixed(0)} MiB`);
  console.log(`node alone on the droplet (${AGENT_NODE_FLAGS.join(' ')}, nothing loaded): RSS ${(bareKib('VmRSS') / 1024).toFixed(0)} MiB, of which mapped files ${(bareKib('RssFile') / 1024).toFixed(0)} MiB and anonymous ${(bareKib('RssAnon') / 1024).toFixed(0)} MiB`);
  if (refused) console.log(`the ${REFUSED_MIB} MiB API (cap ${BUNDLE_MAX_BYTES / MIB} MiB compressed): ${refused.said || 'not refused?'}; on the droplet afterwards: ${leftOnDroplet.trim() || 'no /var/plumber/huge'}`);
  console.log(`\nmachine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end (other engineers' tests share it); node ${process.version}; ${new Date().toISOString()}`);
} finally {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  await lab.stop();
}
