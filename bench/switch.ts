/**
 * The agent after R answers (issue 14): where a one-file redeploy's time goes from the new
 * worker's `systemctl start` to the answer, per step, read from the agent's own timing lines
 * (PLUMB_TIMING=1, CLOCK_MONOTONIC, which a lab droplet shares with the host) and systemd's
 * ExecMainStartTimestampMonotonic of the new worker. Two ways of changing the nftables table, in
 * turns on one droplet: the agent's `nft -i` session, and an `nft -f` process per change
 * (PLUMB_NFT=process, the agent before). Prints tables, asserts nothing.
 * Run after `npm run build`: node bench/dist/bench/switch.js [--quick]
 */
import { startLab } from '../test/lab/lab.js';
import { apiDir, sumApi } from '../test/e2e/api-fixtures.js';
import { agentAnswersAgain } from '../test/e2e/plumb.js';
import { benchDroplet } from './bench-droplet.js';

const quick = process.argv.includes('--quick');
const TURNS = quick ? 1 : 4;
/** Redeploys per way and turn, after one not counted (the first after the agent's restart opens its D-Bus link and nft session). */
const PER_TURN = quick ? 2 : 4;
const WAYS = ['process', 'session'] as const;
type Way = (typeof WAYS)[number];

/** Consecutive marks, and what lies between them. */
const STEPS: Array<[from: string, to: string, what: string]> = [
  ['start-requested', 'start-returned', '`systemctl start` over D-Bus (StartUnit, --no-block) returns'],
  ['start-requested', 'exec', 'R\'s process started (ExecMainStartTimestamp)'],
  ['exec', 'healthy', 'R loads and listens, the health gate sees it (probe every 20 ms)'],
  ['healthy', 'enabled', 'the boot links (made while R loaded) awaited'],
  ['enabled', 'locked', 'progress sent, the shared lock taken'],
  ['locked', 'nat-render', 'the state changed, nginx model, uids, table rendered'],
  ['nat-render', 'nft-done', 'nft loads the table (a copy in /run): new connections reach the new worker'],
  ['nat-render', 'nat-file-written', 'beside it: /var/lib/plumb/nat.nft written (fsync), awaited before the state'],
  ['nft-done', 'nginx-checked', 'boot units checked, nginx compared (not reloaded)'],
  ['nginx-checked', 'state-saved', 'state.json and its backup written (fsync each)'],
  ['state-saved', 'current-pointed', 'drain started, `current` pointed'],
  ['current-pointed', 'answer-sent', 'releases pruned, logged, the answer written to the socket'],
  ['answer-sent', 'exit', '`plumb` prints and exits'],
];
const SPANS: Array<[from: string, to: string, what: string]> = [
  ['state-saved', 'drain-stop', 'beside it: the old worker found idle, its stop begins (3 `systemctl` processes)'],
  ['healthy', 'nft-done', 'R answers -> new code serves'],
  ['healthy', 'answer-sent', 'R answers -> the answer sent'],
  ['healthy', 'exit', 'R answers -> `plumb` exits'],
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const monoNow = () => Number(process.hrtime.bigint() / 1000n) / 1000;

const lab = await startLab();
try {
  const bench = await benchDroplet(lab, 'switchbench');
  const onDroplet = (argv: string[]) => lab.droplet(bench.id).exec(argv);
  const deploy = async (version: string) => {
    const started = monoNow();
    const run = await bench.run(['deploy', await apiDir(sumApi(version)), '--name', 'sum', '--no-deps', '--json']);
    return { started, exited: monoNow(), ports: (JSON.parse(run.stdout) as { ports: number[] }).ports };
  };
  await deploy('first');

  const useWay = async (way: Way) => {
    const dropIn = `[Service]\nEnvironment=PLUMB_TIMING=1 PLUMB_NFT=${way}\n`;
    await onDroplet(['sh', '-c', `mkdir -p /etc/systemd/system/plumb-agent.service.d && printf '%s' '${dropIn}' > /etc/systemd/system/plumb-agent.service.d/bench-timing.conf && systemctl daemon-reload && systemctl restart plumb-agent`]);
    if (!(await agentAnswersAgain(bench.user))) throw new Error('the agent did not answer after its restart');
    await deploy(`${way}-warm`);
  };

  const samples: Record<Way, Array<Map<string, number>>> = { process: [], session: [] };
  const vias: Record<Way, Set<string>> = { process: new Set(), session: new Set() };
  const loadBefore = (await onDroplet(['cat', '/proc/loadavg'])).trim();
  for (let turn = 1; turn <= TURNS; turn++) {
    for (const way of WAYS) {
      await useWay(way);
      for (let i = 1; i <= PER_TURN; i++) {
        const { started, exited, ports } = await deploy(`${way}-${turn}-${i}`);
        const lines = (await onDroplet(['journalctl', '-u', 'plumb-agent', '-o', 'cat', '--since', '-2min'])).split('\n');
        const at = new Map<string, number>();
        for (const line of lines) {
          if (!line.startsWith('{') || !line.includes('"timing"')) continue;
          const mark = JSON.parse(line) as { step: string; mono_ms: number; via?: string };
          if (mark.mono_ms < started || at.has(mark.step)) continue;
          at.set(mark.step, mark.mono_ms);
          if (mark.via) vias[way].add(mark.via);
        }
        const exec = Number(await onDroplet(['systemctl', 'show', '-p', 'ExecMainStartTimestampMonotonic', '--value', `plumber-sum@${ports[0]}.service`])) / 1000;
        at.set('exec', exec);
        at.set('exit', exited);
        samples[way].push(at);
      }
    }
  }
  const loadAfter = (await onDroplet(['cat', '/proc/loadavg'])).trim();
  // The session way ran last: its nft is the one still running.
  const nftRss = (await onDroplet(['sh', '-c', 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = nft ] && grep VmRSS $p/status; done; true'])).trim();

  const between = (way: Way, from: string, to: string) => median(samples[way].flatMap((at) => (at.has(from) && at.has(to) ? [at.get(to)! - at.get(from)!] : [])));
  const row = (from: string, to: string, what: string) => {
    const [before, after] = WAYS.map((w) => between(w, from, to));
    return `| ${what} | ${before!.toFixed(1)} | ${after!.toFixed(1)} | ${(after! / before!).toFixed(2)}x |`;
  };
  const n = TURNS * PER_TURN;
  console.log(`\n### The agent after R answers: one-file redeploys of \`sum\`, ${TURNS} turns x ${PER_TURN} per way, medians of ${n} (ms)\n`);
  console.log('| step | `nft -f` process | `nft -i` session | session / process |');
  console.log('|---|---|---|---|');
  for (const [from, to, what] of STEPS) console.log(row(from, to, what));
  for (const [from, to, what] of SPANS) console.log(row(from, to, what.startsWith('R answers') ? `**${what}**` : what));
  console.log(`\nnft ran via: process ${[...vias.process].join('+')}, session ${[...vias.session].join('+')}; droplet load before ${loadBefore}, after ${loadAfter}; the session's nft: ${nftRss || '?'}`);
} finally {
  await lab.stop();
}
