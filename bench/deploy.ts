/**
 * Benchmarks for issue 14 (the deploy path), on a lab droplet (s-2vcpu-4gb): prints tables, asserts nothing.
 *   1. redeploys: a one-file API, and a one-line change to an API with a 100 MB file, sent as a
 *      delta and with --full; on the LAN and with 50 ms added to the round trip by a userspace
 *      delay proxy in front of the agent's port. Time until the new code answers, until the
 *      command returns, bytes sent, and where the time goes (the step times plumb prints); and the
 *      one-file redeploy from the bundled CLI and from tsc's separate files, in turns;
 *   2. `plumb status` for 10 APIs with 2 workers each, and what the agent's systemd questions
 *      cost asked one process per worker (before) and in one `systemctl show` (after);
 *   3. the old way: plumberDeploy's do_deploy_api operations replayed with OpenSSH over one
 *      connection (ssh-baseline.ts), same one-file API, LAN and +50 ms, beside plumb's figures;
 *   4. the agent's memory idle and around a 100 MB upload (bundles up to the cap: agent-memory.ts); `plumb --version` start time;
 *   5. `plumb logs -f`: from a request that makes R write a line until the follower prints it, split
 *      into journald's part and plumb's;
 *   6. the warm spare (deploy --spare): a one-file redeploy started cold vs handed to a spare, and the spare's memory;
 *      and the first requests a worker serves, R listening → first 404 → first 200, cold and after
 *      a spare's handover with and without the spare's request warm-up, in turns (first-request.ts);
 *   7. old releases pruned behind the answer: one-file redeploys of an API at --keep 1 (one old
 *      release to delete each time) and one at --keep 50 (none), in turns: the agent's time to its
 *      answer, the command's, and the prune's own time from the agent's journal.
 * Run: npm run bench, or after it `node bench/dist/bench/deploy.js [--quick]` (--quick: one run
 * each, a 20 MB file, 2 APIs for status; a check that the benchmark works, not figures; --spare-only:
 * section 6 alone; --logs-only: section 5 alone; --status-only: section 2 alone; --prune-only: section 7 alone).
 */
import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { AGENT_PORT, pollUntil, type StatusResult } from '@plumb/shared';
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { httpGet } from '../test/e2e/helpers.js';
import { PLUMB_CLI, rawConnection } from '../test/e2e/plumb.js';
import { benchDroplet } from './bench-droplet.js';
import { firstRequests } from './first-request.js';
import { startDelayProxy } from './delay-proxy.js';
import { shellTimes } from './shell-timed.js';
import { sshBaseline, type SshDeploy } from './ssh-baseline.js';

const quick = process.argv.includes('--quick');
/** Only the warm spare's section (6), on its own droplet. */
const spareOnly = process.argv.includes('--spare-only');
/** Only `plumb logs -f` (section 5). */
const logsOnly = process.argv.includes('--logs-only');
/** Only `plumb status` with many workers (section 2). */
const statusOnly = process.argv.includes('--status-only');
/** Only the prune's place (section 7). */
const pruneOnly = process.argv.includes('--prune-only');
const PRUNE_REPS = quick ? 3 : 10;
const REPS = quick ? 1 : 5;
/** Runs of each arm of the first-request table (cheap: one R start each). */
const FIRST_REPS = quick ? 1 : 7;
/** tsc's own files, before scripts/bundle-cli.mjs: the same CLI with ~200 modules to resolve and link. */
const UNBUNDLED_CLI = path.join(path.dirname(PLUMB_CLI), 'cli.js');
const BIG_BYTES = (quick ? 20 : 100) * 1024 * 1024;
const STATUS_APIS = quick ? 2 : 10;
const ONE_WAY_MS = 25;
/** `plumb logs -f` latency: lines timed per network, and how long one may take before it counts as lost. */
const LOG_LINES = quick ? 20 : 100;
const LOG_WAIT_MS = 5_000;
/** Each line is said at a random moment within this long after the last one showed. */
const LOG_PHASE_MS = 1_000;
/** How long the follower is left with nothing new to show, to see what following costs the agent. */
const LOG_IDLE_MS = quick ? 5_000 : 10_000;
/** How long the new code is looked for once the command has returned. */
const WATCH_AFTER_MS = 120_000;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(2);

/** One line `plumb logs -f` was timed for: when it was asked for, stored by journald and printed by the follower (ms since the epoch). */
interface LoggedLine {
  n: number;
  sent: number;
  stored?: number;
  printed?: number;
}

interface Deployed {
  commandMs: number;
  /** Until the new code first answered through nginx, from the command's start. */
  servingMs: number;
  sentBytes: number;
  mode: string;
  /** Seconds per step, as plumb printed them (non-TTY: `[  1.2s] step`). */
  steps: Map<string, number>;
}

/** A step's name without what changes from run to run (counts, droplet names, details). */
const stepName = (line: string) => line.replace(/ to \S+$/, '').replace(/\d+( of \d+)? files?/, 'N files').replace(/: .*$/, '');

const OUTSIDE_STEPS = 'node and plumb starting, connecting (until the first step)';

function stepTimes(stderr: string, totalMs: number): Map<string, number> {
  const marks = [...stderr.matchAll(/^\[\s*([\d.]+)s\] (\S.*)$/gm)].map((m) => ({ at: Number(m[1]) * 1000, step: stepName(m[2]!) }));
  const steps = new Map<string, number>();
  const first = marks[0]?.at ?? 0;
  steps.set(OUTSIDE_STEPS, totalMs - (marks.at(-1)?.at ?? 0) + first);
  marks.forEach((m, i) => {
    const next = marks[i + 1];
    if (next) steps.set(m.step, (steps.get(m.step) ?? 0) + next.at - m.at);
  });
  return steps;
}

const lab = await startLab();
try {
  const bench = await benchDroplet(lab, 'deploybench');
  const { user, address } = bench;
  const onDroplet = (argv: string[], opts?: { input?: string }) => lab.droplet(bench.id).exec(argv, opts);

  // The same user seen through the delay proxy: its own config dir, the droplet at the proxy's address.
  const proxy = await startDelayProxy({ host: address, port: AGENT_PORT }, ONE_WAY_MS);
  const wanHome = await mkdtemp(path.join(os.tmpdir(), 'plumb-bench-wan-'));
  await cp(path.join(user.configHome, 'plumb'), path.join(wanHome, 'plumb'), { recursive: true });
  const dropletsFile = path.join(wanHome, 'plumb/droplets.json');
  const known = JSON.parse(await readFile(dropletsFile, 'utf8')) as { droplets: Array<{ ipv4: string; agentPort: number }> };
  for (const d of known.droplets) Object.assign(d, { ipv4: '127.0.0.1', agentPort: proxy.port });
  await writeFile(dropletsFile, JSON.stringify(known));
  const networks = { LAN: user.configHome, '+50 ms RTT': wanHome } as const;

  const plumb = (home: string, args: string[], cli = PLUMB_CLI) => execa(process.execPath, [cli, ...args], { env: { ...user.env, XDG_CONFIG_HOME: home }, reject: false, stdin: 'ignore' });

  /** Runs `work` and watches `url` meanwhile: how long until it answered `version`, and until `work` ended. */
  async function watched<T>(url: string, version: string, work: () => Promise<T>): Promise<{ result: T; servingMs: number; commandMs: number }> {
    const started = performance.now();
    let servingMs = NaN;
    let finished = false;
    let commandMs = Infinity;
    const watching = (async () => {
      for (;;) {
        const answer = await httpGet(url, 2000).catch(() => undefined);
        if (answer?.body === `["${version}"]`) {
          servingMs = performance.now() - started;
          return;
        }
        // The SSH replay returns before R answers: keep looking after the command, within a bound.
        if (finished && performance.now() - started > commandMs + WATCH_AFTER_MS) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const result = await work();
    commandMs = performance.now() - started;
    finished = true;
    await watching;
    return { result, servingMs, commandMs };
  }

  async function timedDeploy(home: string, dir: string, name: string, version: string, flags: string[] = [], cli = PLUMB_CLI): Promise<Deployed> {
    const { result: run, servingMs, commandMs } = await watched(`http://${address}/${name}/version`, version, () => plumb(home, ['deploy', dir, '--name', name, '--json', ...flags], cli));
    if (run.exitCode !== 0) throw new Error(`plumb deploy ${name}: ${run.stderr}`);
    const result = JSON.parse(run.stdout) as { upload: { mode: string; bytes: number } };
    return { commandMs, servingMs, sentBytes: result.upload.bytes, mode: result.upload.mode, steps: stepTimes(run.stderr, commandMs) };
  }

  // 4a. The agent's memory: idle before any deploy, and its peak once a whole big bundle went through it.
  const agentPid = await onDroplet(['systemctl', 'show', 'plumb-agent.service', '-p', 'MainPID', '--value']);
  const memory = async () => {
    const status = await onDroplet(['cat', `/proc/${agentPid}/status`]);
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
  };
  const idle = await memory();

  let warmVersion = 0;
  async function warmSpare() {
    // 6. The warm spare (deploy --spare): the same one-file redeploy, cold and handed to a spare, in
    // turns, on the LAN and at +50 ms RTT. Between deploys the spare is let become ready, as it is between a user's deploys.
    const warmDir = await apiDir(sumApi('w0'));
    // Waiting as `plumb status` shows it (its R process said so on its journal), with its memory as
    // status reads it: VmRSS (systemd's MemoryCurrent, read here before, gave NaN in the lab).
    const waitingSpare = async () => {
      const spare = await pollUntil(
        async () => {
          const statuses = JSON.parse((await plumb(networks.LAN, ['status', '--json'])).stdout) as Array<{ status?: StatusResult }>;
          const found = statuses[0]?.status?.apis.find((a) => a.name === 'warm')?.spare;
          return found?.state === 'waiting' ? found : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 100 },
      );
      if (!spare) throw new Error('the warm spare did not become ready');
      return spare;
    };
    let spareRss = NaN;
    const warmDeploy = async (home: string, flags: string[]) => {
      const v = `w${++warmVersion}`;
      await writeFile(path.join(warmDir, 'plumber.R'), sumApi(v)['plumber.R']);
      return timedDeploy(home, warmDir, 'warm', v, flags);
    };
    await warmDeploy(networks.LAN, ['--no-spare']);
    const rows: Array<{ network: string; cold: Deployed[]; spare: Deployed[] }> = [];
    for (const [network, home] of Object.entries(networks)) {
      const row = { network, cold: [] as Deployed[], spare: [] as Deployed[] };
      for (let i = 0; i < REPS; i++) {
        // No spare yet: a cold start, after which a spare starts. The next redeploy is handed to it;
        // a --no-spare deploy (not counted) then takes the API back to no spare.
        row.cold.push(await warmDeploy(home, ['--spare']));
        spareRss = ((await waitingSpare()).rssBytes ?? NaN) / 1024 / 1024;
        row.spare.push(await warmDeploy(home, []));
        await warmDeploy(networks.LAN, ['--no-spare']);
      }
      rows.push(row);
    }
    console.log(`\n### The warm spare: one-file redeploy, started cold vs handed to a spare (median of ${REPS} each, in turns)\n`);
    console.log('| network | start | new code answers | command returns | starting R + waiting for the API | new code answers vs cold R + 300 ms |');
    console.log('|---|---|---|---|---|---|');
    for (const row of rows) {
      const rStart = (runs: Deployed[]) => median(runs.map((x) => (x.steps.get('starting R') ?? 0) + (x.steps.get('waiting for the API') ?? 0)));
      // The issue's bar: new code serving within R's start (a cold one, this run) plus 300 ms.
      const bar = rStart(row.cold) + 300;
      for (const mode of ['cold', 'spare'] as const) {
        const runs = row[mode];
        const serving = median(runs.map((x) => x.servingMs));
        console.log(`| ${row.network} | ${mode} | ${sec(serving)} s | ${sec(median(runs.map((x) => x.commandMs)))} s | ${sec(rStart(runs))} s | ${(serving / bar).toFixed(2)}x of ${sec(bar)} s |`);
      }
    }
    console.log('');
    for (const row of rows) console.log(`${row.network}: ratio cold / spare (new code answers): ${(median(row.cold.map((x) => x.servingMs)) / median(row.spare.map((x) => x.servingMs))).toFixed(2)}x`);
    console.log(`a waiting spare's memory (resident, as plumb status shows it): ${spareRss.toFixed(0)} MiB`);

    // 6b. The first requests: the warm API's live release, run by the runner outside its unit.
    const first = await firstRequests(onDroplet, '/var/plumber/warm/current', '/add?a=1&b=2', FIRST_REPS);
    const ms = (xs: number[]) => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})`;
    console.log(`\n### The first requests a worker serves, R started by the runner outside systemd (ms, median (range) of ${FIRST_REPS} each, in turns)\n`);
    console.log("| worker | start (cold) or handover → R listening | listening → first answer (404 on /, the health gate's) | start or handover → first answer (the health gate's wait) | first 200 (/add?a=1&b=2) | the same again (warm) |");
    console.log('|---|---|---|---|---|---|');
    for (const [arm, runs] of Object.entries(first)) {
      console.log(`| ${arm} | ${ms(runs.map((r) => r.listenMs))} | ${ms(runs.map((r) => r.firstMs))} | ${ms(runs.map((r) => r.gateMs))} | ${ms(runs.map((r) => r.first200Ms))} | ${ms(runs.map((r) => r.warm200Ms))} |`);
    }
    const unexpected = Object.values(first).flat().filter((r) => r.statuses.join(' ') !== '404 200 200');
    const said = [...new Set(first['spare, request warm-up (after)'].flatMap((r) => r.stderr.split('\n').filter(Boolean).map((l) => l.replace(/\d+/g, 'N'))))];
    console.log(`\nruns answering other than 404, 200, 200: ${unexpected.length}; what the warmed spares wrote to stderr (digits as N): ${said.map((l) => JSON.stringify(l)).join(', ')}`);
  }

  /**
   * 5. `plumb logs -f`: from the request that makes R write a line until the follower prints it, split
   * where the line is seen: journald stores it (the entry's own time; the droplet is a container on
   * this machine, so one clock), `plumb logs -f --json` prints it here (plumb: agent, network, CLI);
   * beside it, when a journalctl -f of the bench's own on the droplet printed it (what a follower
   * that waits for journald's notice gets).
   */
  async function logsLatency() {
    const logger = await apiDir({ 'plumber.R': '#* @get /say\nfunction(n) {\n  message("plumb-bench-line ", n)\n  "ok"\n}\n' });
    const loggerDeploy = await plumb(networks.LAN, ['deploy', logger, '--name', 'logger', '--no-deps']);
    if (loggerDeploy.exitCode !== 0) throw new Error(`plumb deploy logger: ${loggerDeploy.stderr}`);
    const stamps = '/run/plumb-bench-journal.log';
    await onDroplet(['systemd-run', '--unit=plumb-bench-journal', '--quiet', '--', 'bash', '-c', `journalctl -f -n 0 -o cat SYSLOG_IDENTIFIER=plumber-logger | while IFS= read -r l; do printf '%s %s\\n' "$EPOCHREALTIME" "$l"; done > ${stamps}`]);
    const now = () => performance.timeOrigin + performance.now();
    const timed: Record<string, LoggedLine[]> = {};
    const cpuPerSecond: Record<string, { idle: number; lines: number }> = {};
    // The agent's CPU and that of the processes it ran and reaped (its journalctl reads): utime, stime, cutime, cstime in 10 ms ticks.
    const agentCpuMs = async () => {
      const fields = (await onDroplet(['cat', `/proc/${agentPid}/stat`])).split(') ')[1]!.split(' ');
      return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) * 10;
    };
    let said = 0;
    for (const [network, home] of Object.entries(networks)) {
      const follower = execa(process.execPath, [PLUMB_CLI, 'logs', 'logger', '-f', '-n', '0', '--json'], { env: { ...user.env, XDG_CONFIG_HOME: home }, reject: false, stdin: 'ignore', buffer: false });
      const seen = new Map<number, { printed: number; stored: number }>();
      createInterface({ input: follower.stdout! }).on('line', (line) => {
        const entry = JSON.parse(line) as { time: number; message: string };
        const n = /plumb-bench-line (\d+)/.exec(entry.message)?.[1];
        if (n !== undefined) seen.set(Number(n), { printed: now(), stored: entry.time / 1000 });
      });
      /** Says line n; when, and when it was stored and printed here (absent: not within LOG_WAIT_MS). */
      const say = async (): Promise<LoggedLine> => {
        const n = ++said;
        const sent = now();
        await httpGet(`http://${address}/logger/say?n=${n}`, LOG_WAIT_MS);
        while (!seen.has(n) && now() - sent < LOG_WAIT_MS) await new Promise((r) => setTimeout(r, 1));
        return { n, sent, ...seen.get(n) };
      };
      // Until the follower is connected and following.
      for (let i = 0; i < 30 && (await say()).printed === undefined; i++);
      const idleFrom = { cpu: await agentCpuMs(), at: now() };
      await new Promise((r) => setTimeout(r, LOG_IDLE_MS));
      const busyFrom = { cpu: await agentCpuMs(), at: now() };
      const lines: LoggedLine[] = [];
      for (let i = 0; i < LOG_LINES; i++) {
        // At a random moment: a line said as soon as the last one showed keeps step with journald's
        // wake-ups, which fall on one 250 ms grid per boot (sd-event's sleep_between), and would measure one phase of it.
        await new Promise((r) => setTimeout(r, Math.random() * LOG_PHASE_MS));
        lines.push(await say());
      }
      const end = { cpu: await agentCpuMs(), at: now() };
      cpuPerSecond[network] = { idle: (busyFrom.cpu - idleFrom.cpu) / ((busyFrom.at - idleFrom.at) / 1000), lines: (end.cpu - busyFrom.cpu) / ((end.at - busyFrom.at) / 1000) };
      follower.kill('SIGINT');
      await follower;
      timed[network] = lines;
    }
    await onDroplet(['systemctl', 'stop', 'plumb-bench-journal']);
    // What a follower that read the journal again on each change (instead of waiting for journald's
    // notice) would pay per read: one journalctl from a second ago with plumb's filter (CPU, from bash's `times`).
    const reads = 10;
    const readCpu = await onDroplet(['bash', '-c', `for i in $(seq ${reads}); do journalctl -o json --all --no-pager -n all --since=@$(($(date +%s) - 1)) SYSLOG_IDENTIFIER=plumber-logger + _PID=1 >/dev/null; done; times`]);
    const children = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(readCpu.trim());
    const readMs = children ? ((Number(children[1]) * 60 + Number(children[2]) + Number(children[3]) * 60 + Number(children[4])) * 1000) / reads : NaN;
    const journalctlPrinted = new Map<number, number>();
    for (const m of (await onDroplet(['cat', stamps])).matchAll(/^([\d.]+) plumb-bench-line (\d+)$/gm)) journalctlPrinted.set(Number(m[2]), Number(m[1]) * 1000);
    const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)] ?? NaN;
    const cell = (xs: number[]) => `${median(xs).toFixed(0)} / ${p95(xs).toFixed(0)}`;
    console.log(`\n### \`plumb logs -f\`: a line R writes (message()), until the follower prints it (${LOG_LINES} lines, one at a time, each at a random moment within ${LOG_PHASE_MS} ms; ms, median / p95)\n`);
    console.log('| network | request → journald stored it (HTTP, R) | stored → a `journalctl -f` on the droplet printed it (journald\'s notice) | stored → `plumb logs -f` printed it (agent, network, CLI) | total | lost |');
    console.log('|---|---|---|---|---|---|');
    for (const [network, lines] of Object.entries(timed)) {
      const got = lines.filter((l): l is Required<LoggedLine> => l.printed !== undefined && l.stored !== undefined);
      const noticed = got.filter((l) => journalctlPrinted.has(l.n));
      console.log(`| ${network} | ${cell(got.map((l) => l.stored - l.sent))} | ${cell(noticed.map((l) => journalctlPrinted.get(l.n)! - l.stored))} | ${cell(got.map((l) => l.printed - l.stored))} | ${cell(got.map((l) => l.printed - l.sent))} | ${lines.length - got.length} |`);
    }
    console.log(`\none \`journalctl\` reading the API's journal from a second ago (what a follower reading on each change of the journal would run each time): ${readMs.toFixed(1)} ms of CPU (mean of ${reads})`);
    for (const [network, cpu] of Object.entries(cpuPerSecond)) console.log(`the agent's CPU with its reads, ${network}: ${cpu.idle.toFixed(1)} ms/s following with nothing new for ${LOG_IDLE_MS / 1000} s, ${cpu.lines.toFixed(1)} ms/s while the lines came`);
  }

  /** 2. `plumb status` with many workers: the whole command from a shell, and its parts. */
  async function statusSection(): Promise<void> {
    const small = await apiDir(sumApi('s0'));
    for (let i = 1; i <= STATUS_APIS; i++) {
      const r = await plumb(networks.LAN, ['deploy', small, '--name', `st${i}`, '--workers', '2', '--no-deps']);
      if (r.exitCode !== 0) throw new Error(`plumb deploy st${i}: ${r.stderr}`);
    }
    const statusTimes: Record<string, number> = {};
    // From a shell, in turns with node's own start: the whole command as a user types it.
    const statusRounds = quick ? 3 : 11;
    for (const [network, home] of Object.entries(networks)) {
      const status = (cli: string) => [process.execPath, cli, 'status', '--json'];
      const [bundled, separate, floor] = await shellTimes(network === 'LAN' ? [status(PLUMB_CLI), status(UNBUNDLED_CLI), [process.execPath, '-e', '0']] : [status(PLUMB_CLI)], statusRounds, { ...user.env, XDG_CONFIG_HOME: home });
      statusTimes[network] = median(bundled!);
      if (separate) statusTimes[`${network}, from tsc's separate files (dist/cli.js), in turns with the bundle`] = median(separate);
      if (floor) statusTimes[`${network}: \`node -e 0\` in the same turns (node's own start, the floor)`] = median(floor);
    }
    // The whole command split: opening a socket (TLS, upgrade, auth), and the status request on an open one (the agent's work).
    const connectTimes: number[] = [];
    const requestTimes: number[] = [];
    for (let i = 0; i < Math.max(REPS, 3); i++) {
      const opened = performance.now();
      const connection = await rawConnection(user, address);
      const asked = performance.now();
      await connection.request<StatusResult>({ type: 'status' });
      requestTimes.push(performance.now() - asked);
      connectTimes.push(asked - opened);
      connection.close();
    }
    const props = '--property=ActiveState,SubState,Result,NRestarts,MainPID,ActiveEnterTimestamp';
    // The agent's questions as before: per API in turn, its workers at once, plus cloud-init's status for the hello and again for the status.
    const ms = async (script: string) => {
      const times: number[] = [];
      for (let i = 0; i < Math.max(REPS, 3); i++) times.push(Number(await onDroplet(['sh', '-c', `s=$(date +%s%N); { ${script} ; } >/dev/null 2>&1; echo $(( ($(date +%s%N) - s) / 1000000 ))`])));
      return median(times);
    };
    const workerUnits = (await onDroplet(['sh', '-c', "systemctl list-units --plain --no-legend 'plumber-st*@*.service' | awk '{print $1}'"])).split('\n').filter(Boolean);
    const perApi = new Map<string, string[]>();
    for (const u of workerUnits) perApi.set(u.split('@')[0]!, [...(perApi.get(u.split('@')[0]!) ?? []), u]);
    const before = [...perApi.values()].map((us) => `${us.map((u) => `systemctl show ${u} ${props} &`).join(' ')} wait;`).join(' ');
    const beforeMs = await ms(`${before} cloud-init status --format json; cloud-init status --format json`);
    const afterMs = await ms(`systemctl show ${props} -- ${workerUnits.join(' ')}`);
    console.log(`\n### \`plumb status\` with ${STATUS_APIS} APIs x 2 workers (whole commands: median of ${statusRounds}, from a shell; the parts: median of ${Math.max(REPS, 3)})\n`);
    console.log('| what | ms |');
    console.log('|---|---|');
    for (const [network, t] of Object.entries(statusTimes)) console.log(network.includes('node -e 0') ? `| ${network} | ${t.toFixed(0)} |` : `| \`plumb status --json\`, ${network} (whole command) | ${t.toFixed(0)} |`);
    console.log(`| of which: opening a socket to the agent (TLS, upgrade, auth), LAN, in one process | ${median(connectTimes).toFixed(0)} |`);
    console.log(`| of which: the status request on an open socket (the agent's work), LAN | ${median(requestTimes).toFixed(0)} |`);
    console.log(`| on the droplet: ${workerUnits.length} \`systemctl show\` processes (per API in turn) + 2 \`cloud-init status\` (before) | ${beforeMs.toFixed(0)} |`);
    console.log(`| on the droplet: one \`systemctl show\` of ${workerUnits.length} units, cloud-init's finished status remembered (after) | ${afterMs.toFixed(0)} |`);
    console.log(`| ratio before / after | ${(beforeMs / Math.max(1, afterMs)).toFixed(1)}x |`);
  }

  /**
   * 7. Old releases pruned (ops/prune.ts): where the prune held up the answer (before session 11),
   * the --keep 1 API's deploys took its cost longer than the --keep 50 one's; behind the answer they
   * take the same. --no-deps on both, so the package check's noise stays out; in turns, so load hits both alike.
   */
  interface PruneRun {
    agentMs: number;
    commandMs: number;
    afterSwitchMs: number;
  }
  async function pruneSection(): Promise<void> {
    const arms = [
      { arm: '--keep 1 (one old release deleted per deploy)', name: 'keepone', keep: '1', dir: await apiDir(sumApi('k0')), runs: [] as PruneRun[] },
      { arm: '--keep 50 (nothing to delete)', name: 'keepmany', keep: '50', dir: await apiDir(sumApi('k0')), runs: [] as PruneRun[] },
    ];
    /**
     * From the switch to the answer, on the droplet's clock: `current` is the last thing a rollout
     * changes (its symlink's own mtime), the agent's `deployed` line the last before the answer
     * (journald's receipt time). Before session 11 the prune ran between the two.
     */
    const afterSwitch = async (name: string) => {
      const out = await onDroplet(['sh', '-c', `stat -c %.6Y /var/plumber/${name}/current; journalctl -u plumb-agent -o json -n 300 --no-pager`]);
      const [mtime, ...entries] = out.split('\n');
      const deployed = entries.flatMap((l) => {
        const e = JSON.parse(l) as { MESSAGE?: string; __REALTIME_TIMESTAMP: string };
        return e.MESSAGE?.includes('"msg":"deployed"') && e.MESSAGE.includes(`"api":"${name}"`) ? [Number(e.__REALTIME_TIMESTAMP) / 1000] : [];
      });
      return (deployed.at(-1) ?? NaN) - Number(mtime) * 1000;
    };
    let v = 0;
    const redeploy = async (a: (typeof arms)[number], flags: string[] = []) => {
      await writeFile(path.join(a.dir, 'plumber.R'), sumApi(`k${++v}`)['plumber.R']);
      const started = performance.now();
      const run = await plumb(networks.LAN, ['deploy', a.dir, '--name', a.name, '--json', '--no-deps', ...flags]);
      if (run.exitCode !== 0) throw new Error(`plumb deploy ${a.name}: ${run.stderr}`);
      const commandMs = performance.now() - started;
      return { agentMs: (JSON.parse(run.stdout) as { tookMs: number }).tookMs, commandMs, afterSwitchMs: await afterSwitch(a.name) };
    };
    // This section's prunes only, on a droplet that may have run it before.
    const since = (await onDroplet(['date', '+%s'])).trim();
    // Three releases first, so that every measured --keep 1 deploy has one to delete (the one before
    // the previous: the previous one's worker may still drain).
    for (const a of arms) for (let i = 0; i < 3; i++) await redeploy(a, ['--keep', a.keep]);
    for (let i = 0; i < PRUNE_REPS; i++) for (const a of arms) a.runs.push(await redeploy(a));
    await new Promise((r) => setTimeout(r, 2000));
    const journal = await onDroplet(['sh', '-c', `journalctl -u plumb-agent -o cat --no-pager --since @${since} | grep 'old releases pruned' || true`]);
    const pruneMs = journal.split('\n').flatMap((l) => {
      const m = /"api":"keepone".*"took_ms":(\d+)/.exec(l);
      return m ? [Number(m[1])] : [];
    });
    console.log(`\n### Old releases pruned: one-file redeploys on the LAN, --no-deps (median of ${PRUNE_REPS} each, in turns)\n`);
    console.log("| API | from the switch (`current`) to the agent's answer | agent's time to its answer (tookMs) | command returns |");
    console.log('|---|---|---|---|');
    for (const a of arms) console.log(`| ${a.arm} | ${median(a.runs.map((r) => r.afterSwitchMs)).toFixed(1)} ms | ${median(a.runs.map((r) => r.agentMs)).toFixed(0)} ms | ${median(a.runs.map((r) => r.commandMs)).toFixed(0)} ms |`);
    const [one, many] = arms.map((a) => median(a.runs.map((r) => r.afterSwitchMs)));
    console.log(`\n--keep 1 minus --keep 50 (switch to answer): ${(one! - many!).toFixed(1)} ms (ratio ${(one! / many!).toFixed(2)}x); the prune itself, behind the answer (agent journal, median of ${pruneMs.length}): ${pruneMs.length ? `${median(pruneMs)} ms` : 'not logged (an agent from before it)'}`);
  }

  if (spareOnly) await warmSpare();
  else if (pruneOnly) await pruneSection();
  else if (logsOnly) await logsLatency();
  else if (statusOnly) await statusSection();
  else {
    // 1. Redeploys.
    const small = await apiDir(sumApi('s0'));
    const big = await apiDir(sumApi('b0'));
    await mkdir(path.join(big, 'data'));
    await writeFile(path.join(big, 'data/model.bin'), randomBytes(BIG_BYTES));
    await timedDeploy(networks.LAN, small, 'small', 's0');
    await timedDeploy(networks.LAN, big, 'big', 'b0');
    const afterBig = await memory();

    const cases = [
      { what: 'one-file API, a line changed', dir: small, name: 'small', flags: [] as string[], reps: REPS },
      { what: `${BIG_BYTES / 1024 / 1024} MB API, a line changed`, dir: big, name: 'big', flags: [] as string[], reps: REPS },
      { what: `${BIG_BYTES / 1024 / 1024} MB API, a line changed, --full`, dir: big, name: 'big', flags: ['--full'], reps: Math.min(REPS, 3) },
    ];
    const rows: Array<{ what: string; network: string; runs: Deployed[] }> = [];
    let version = 0;
    for (const [network, home] of Object.entries(networks)) {
      for (const c of cases) {
        const runs: Deployed[] = [];
        for (let i = 0; i < c.reps; i++) {
          const v = `${c.name}${++version}`;
          await writeFile(path.join(c.dir, 'plumber.R'), sumApi(v)['plumber.R']);
          runs.push(await timedDeploy(home, c.dir, c.name, v, c.flags));
        }
        rows.push({ what: c.what, network, runs });
      }
    }
    const base = new Map(rows.filter((r) => r.what.startsWith('one-file')).map((r) => [r.network, median(r.runs.map((x) => x.servingMs))]));
    console.log(`\n### Redeploys (median of ${REPS}; --full: of ${Math.min(REPS, 3)}), default flags (R packages checked)\n`);
    console.log('| API | network | upload | sent | new code answers | command returns | answers vs one-file API |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rows) {
      const serving = median(r.runs.map((x) => x.servingMs));
      console.log(`| ${r.what} | ${r.network} | ${r.runs[0]!.mode} | ${(median(r.runs.map((x) => x.sentBytes)) / 1024).toFixed(0)} KiB | ${sec(serving)} s | ${sec(median(r.runs.map((x) => x.commandMs)))} s | ${(serving / base.get(r.network)!).toFixed(2)}x |`);
    }
    console.log('\n### Where the time goes (median seconds per step, as plumb prints them)\n');
    const shown = rows.filter((r) => !r.what.includes('--full'));
    const stepNames = [...new Set(shown.flatMap((r) => r.runs.flatMap((x) => [...x.steps.keys()])))];
    console.log(`| step | ${shown.map((r) => `${r.what.replace(', a line changed', '')}, ${r.network}`).join(' | ')} |`);
    console.log(`|---|${shown.map(() => '---').join('|')}|`);
    for (const step of stepNames) console.log(`| ${step} | ${shown.map((r) => sec(median(r.runs.map((x) => x.steps.get(step) ?? 0)))).join(' | ')} |`);

    // 1b. The same one-file redeploy from tsc's separate files (dist/cli.js: ~200 modules resolved and
    // linked, what scripts/bundle-cli.mjs bundles), in turns with the bundle so that load hits both alike.
    const byCli: Record<'bundle' | 'separate', Deployed[]> = { bundle: [], separate: [] };
    for (let i = 0; i < REPS; i++) {
      for (const [which, cli] of [['bundle', PLUMB_CLI], ['separate', UNBUNDLED_CLI]] as const) {
        const v = `small${++version}`;
        await writeFile(path.join(small, 'plumber.R'), sumApi(v)['plumber.R']);
        byCli[which].push(await timedDeploy(networks.LAN, small, 'small', v, [], cli));
      }
    }
    console.log(`\n### One-file redeploy on the LAN: the CLI bundled vs tsc's separate files (median of ${REPS} each, in turns)\n`);
    console.log('| CLI | outside the steps (node and plumb starting; after the last) | new code answers | command returns |');
    console.log('|---|---|---|---|');
    for (const [which, runs] of Object.entries(byCli)) {
      const first = median(runs.map((x) => x.steps.get(OUTSIDE_STEPS) ?? NaN));
      console.log(`| ${which === 'bundle' ? 'dist/plumb.js (the bundle)' : "dist/cli.js (tsc's separate files)"} | ${sec(first)} s | ${sec(median(runs.map((x) => x.servingMs)))} s | ${sec(median(runs.map((x) => x.commandMs)))} s |`);
    }

    await warmSpare();
    await pruneSection();

    // 3. The old way, over SSH, on the same droplet and networks.
    const sshProxy = await startDelayProxy({ host: address, port: 22 }, ONE_WAY_MS);
    const baseline = await sshBaseline(onDroplet, address);
    const sshDir = await apiDir(sumApi('x0'));
    const sshTargets = { LAN: { host: address, port: 22 }, '+50 ms RTT': { host: '127.0.0.1', port: sshProxy.port } } as const;
    const sshRows: Array<{ network: string; runs: Array<SshDeploy & { servingMs: number }> }> = [];
    for (const [network, target] of Object.entries(sshTargets)) {
      const runs: Array<SshDeploy & { servingMs: number }> = [];
      for (let i = 0; i < REPS; i++) {
        const v = `x${++version}`;
        await writeFile(path.join(sshDir, 'plumber.R'), sumApi(v)['plumber.R']);
        const { result, servingMs } = await watched(`${baseline.url}/version`, v, () => baseline.deploy(sshDir, target));
        if (Number.isNaN(servingMs)) console.error(`the SSH replay's API did not answer ${v} within ${WATCH_AFTER_MS / 1000} s of its return; its unit's journal:\n${await baseline.lastLines()}`);
        runs.push({ ...result, servingMs });
      }
      sshRows.push({ network, runs });
    }
    await sshProxy.close();
    console.log(`\n### The old way: plumberDeploy's do_deploy_api replayed over one OpenSSH connection, one-file API (median of ${REPS})\n`);
    console.log('| way | network | new code answers | command returns | of which fixed sleeps | answers: SSH / plumb | returns: SSH / plumb |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of sshRows) {
      const plumbRow = rows.find((x) => x.network === r.network && x.what.startsWith('one-file'))!;
      const plumbServing = median(plumbRow.runs.map((x) => x.servingMs));
      const plumbCommand = median(plumbRow.runs.map((x) => x.commandMs));
      const serving = median(r.runs.map((x) => x.servingMs));
      const total = median(r.runs.map((x) => x.totalMs));
      console.log(`| plumb deploy | ${r.network} | ${sec(plumbServing)} s | ${sec(plumbCommand)} s | 0 s | | |`);
      console.log(`| SSH replay (${r.runs[0]!.operations.length} operations) | ${r.network} | ${sec(serving)} s | ${sec(total)} s | ${sec(r.runs[0]!.sleepMs)} s | ${(serving / plumbServing).toFixed(2)}x | ${(total / plumbCommand).toFixed(2)}x |`);
    }
    console.log('\nSSH operations (median ms): ' + sshRows.map((r) => `${r.network}: ${r.runs[0]!.operations.map((o, i) => `${o.what} ${median(r.runs.map((x) => x.operations[i]!.ms)).toFixed(0)}`).join(', ')}`).join('; '));

    await statusSection();

    await logsLatency();

    // 4b. CLI start time.
    const atEnd = await memory();
    // In turns from a shell, as `status` above.
    const [versions, helps, floors] = await shellTimes([[process.execPath, PLUMB_CLI, '--version'], [process.execPath, PLUMB_CLI, '--help'], [process.execPath, '-e', '0']], 11, user.env);
    const [version_, help, floor] = [median(versions!), median(helps!), median(floors!)];
    console.log('\n### The agent and the CLI\n');
    console.log('| what | figure |');
    console.log('|---|---|');
    console.log(`| agent RSS, idle after provision (peak so far) | ${idle.rss.toFixed(0)} MiB (${idle.peak.toFixed(0)} MiB) |`);
    console.log(`| agent peak RSS (VmHWM) after receiving a ${BIG_BYTES / 1024 / 1024} MB bundle | ${afterBig.peak.toFixed(0)} MiB (+${(afterBig.peak - idle.peak).toFixed(0)} MiB) |`);
    console.log(`| agent RSS at the end of the benchmark (peak) | ${atEnd.rss.toFixed(0)} MiB (${atEnd.peak.toFixed(0)} MiB) |`);
    console.log(`| \`plumb --version\` (median of 11, from a shell, in turns with --help and node) | ${version_.toFixed(0)} ms |`);
    console.log(`| \`plumb --help\` | ${help.toFixed(0)} ms |`);
    console.log(`| \`node -e 0\` (the floor) | ${floor.toFixed(0)} ms |`);
    console.log(`\nmachine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end (other engineers' tests share it); node ${process.version}`);
  }
  await proxy.close();
} finally {
  await lab.stop();
}
