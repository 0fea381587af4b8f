import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DRAIN_TIMEOUT_MAX_MS, LOGS_MAX_LINES } from '@plumb/shared';
import type { Lab } from '../lab/lab.js';
import { envCases, refusedEnvValues } from '../cases/env-values.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet, settled } from './helpers.js';
import { startLoad } from './load.js';
import { agentAnswersAgain, PLUMB_CLI, plumbUser, sharedDroplet, withoutSpares, type PlumbUser } from './plumb.js';

/**
 * What users do every day and no other suite drives: the flags of deploy, rollback's refusals,
 * restart under load, logs filters, the droplets table, and hand edits the agent puts right. One
 * droplet for all; each test deploys its own API.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;

const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
// A generous bound: on a loaded machine a fresh R worker's first answer can take seconds.
const get = (urlPath: string) => httpGet(`http://${address}${urlPath}`, 30_000);
const json = async (urlPath: string) => JSON.parse((await get(urlPath)).body) as unknown;
/** nginx's file, every plumber unit and worker env file (not a spare's): what a refused command must leave as it was. */
const serving = () => withoutSpares(user, () => onDroplet(['sh', '-c', 'cat /etc/nginx/conf.d/plumb.conf; for f in /etc/systemd/system/plumber-*; do echo "== $f"; cat "$f"; done; ls /var/lib/plumb/instances']));
/** A command that must succeed; when it did not, its message and the agent's own log say why. */
async function ok(run: { exitCode: number; stderr: string }) {
  if (run.exitCode === 0) return;
  const agentLog = await onDroplet(['journalctl', '-u', 'plumb-agent', '-n', '20', '-o', 'cat', '--no-pager']).catch((err: Error) => err.message);
  assert.fail(`exit ${run.exitCode}:\n${run.stderr}\nthe agent's last log lines:\n${agentLog}`);
}
/** A refusal as the user sees it: non-zero, and one `plumb: ` line (plus at most a hint). */
function oneLineRefusal(run: { exitCode: number; stderr: string }, message: RegExp) {
  assert.notEqual(run.exitCode, 0);
  const lines = run.stderr.trim().split('\n').filter((l) => !l.startsWith('['));
  assert.match(lines[0] ?? '', /^plumb: /, run.stderr);
  assert.match(run.stderr, message);
  assert.ok(lines.length <= 2, `one line and at most a hint:\n${run.stderr}`);
}

/**
 * Removes the describe's APIs once its tests are done: the droplet has 1 GiB, and a dozen R workers
 * at once would have the kernel kill them (and starve the agent).
 */
function removedAfter(...names: string[]) {
  after(async () => {
    for (const name of names) {
      const removed = await user.plumb(['remove', name, '--yes']);
      // A describe left out by --test-name-pattern deployed nothing.
      if (!removed.stderr.includes(`there is no API "${name}"`)) await ok(removed);
    }
  });
}

sharedDroplet('everyday', (shared) => void ({ lab, user, id: dropletId, address } = shared));

// R answers with the bytes of each P_TEST_ variable it sees, in hex: what the API really got,
// whatever R's locale makes of the characters.
const envApi = (version: string) =>
  sumApi(version, `
#* @serializer unboxedJSON
#* @get /env
function() {
  keys <- grep("^P_TEST_", names(Sys.getenv()), value = TRUE)
  setNames(lapply(keys, function(k) paste(as.character(charToRaw(Sys.getenv(k))), collapse = "")), keys)
}
`);
const hex = (value: string) => Buffer.from(value, 'utf8').toString('hex');

/**
 * `plumb ARGS` on a terminal (a pty from `script`), a user typing `value` and Enter once the
 * prompt is on the screen; what the screen showed, and the exit code.
 */
async function typeAtPrompt(args: string[], prompt: RegExp, value: string): Promise<{ exitCode: number; screen: string }> {
  const command = [process.execPath, PLUMB_CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...user.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  child.stdout.on('data', (chunk: Buffer) => {
    const before = screen;
    screen += chunk.toString('utf8');
    if (!prompt.test(before) && prompt.test(screen)) child.stdin.write(`${value}\r`);
  });
  const [exitCode] = (await once(child, 'close')) as [number];
  child.stdin.end();
  return { exitCode, screen };
}

describe('deploy --env', () => {
  removedAfter('env');
  const sent = Object.fromEntries(envCases.map(([name, value]) => [`P_TEST_${name.toUpperCase()}`, value]));
  const expected = Object.fromEntries(Object.entries(sent).map(([key, value]) => [key, hex(value)]));

  test('values with $, backslashes, quotes, backticks, tabs, unicode and empty ones reach R exactly as given, through systemd\'s EnvironmentFile=', async () => {
    await ok(await user.plumb(['deploy', await apiDir(envApi('v1')), '--name', 'env', ...Object.entries(sent).flatMap(([k, v]) => ['--env', `${k}=${v}`])]));
    assert.deepEqual(await json('/env/env'), expected);
  });

  test('a redeploy without --env keeps them', async () => {
    // --wait: the next test compares the droplet before and after a refusal, so the old worker
    // (and its env file) must be gone already.
    await ok(await user.plumb(['deploy', await apiDir(envApi('v2')), '--name', 'env', '--wait']));
    assert.deepEqual(await json('/env/version'), ['v2']);
    assert.deepEqual(await json('/env/env'), expected);
  });

  test('a value with a newline, a carriage return or a NUL is refused in one line naming the variable, not the value; nothing changes', async () => {
    const before = await serving();
    // NUL cannot travel in an argument; the shared rule refusing it is unit-tested with the renderer.
    for (const value of refusedEnvValues.filter((v) => !v.includes('\0'))) {
      const run = await user.plumb(['deploy', await apiDir(envApi('v3')), '--name', 'env', '--env', `P_TEST_BAD=${value}`]);
      oneLineRefusal(run, /P_TEST_BAD.*newline or NUL/);
      assert.ok(!run.stderr.includes('secret'), `the value stays out of the message:\n${run.stderr}`);
    }
    assert.equal(await serving(), before);
    assert.deepEqual(await json('/env/version'), ['v2']);
  });
});

describe('secrets', () => {
  removedAfter('vault');
  // Quotes, $ and a backslash: the value must survive stdin, the wire and systemd's quoting.
  const secret = `s3cret "${randomUUID()}" $HOME \\ end`;
  const other = `file-${randomUUID()}`;
  /** Everything plumb itself shows about the API: none of it may hold a value. */
  const shown = async () => (await Promise.all([['status', '--json'], ['status'], ['secrets', 'list', 'vault', '--json'], ['logs', 'vault', '-n', '200']].map((a) => user.plumb(a)))).map((r) => r.stdout + r.stderr).join('\n');

  test('set from stdin under load: the workers get it with no failed request; list and status show the name, never the value; the files holding it are root-only', async () => {
    await ok(await user.plumb(['deploy', await apiDir(envApi('s1')), '--name', 'vault', '--workers', '2', '--env', 'P_TEST_MODE=plain', '--wait']));
    const load = startLoad(`http://${address}/vault/add?a=1&b=2`, { rps: 10, maxMs: 180_000 });
    const set = await user.plumb(['secrets', 'set', 'vault', 'P_TEST_TOKEN', '--wait'], { input: `${secret}\n` });
    const report = await load.stop();
    await ok(set);
    assert.match(set.stdout, /vault: set P_TEST_TOKEN; restarted 2 workers/);
    assert.equal(report.failed, 0, report.failures.join('\n'));
    assert.deepEqual(await json('/vault/env'), { P_TEST_MODE: hex('plain'), P_TEST_TOKEN: hex(secret) });
    assert.equal((await user.plumb(['secrets', 'list', 'vault'])).stdout.trim(), 'P_TEST_TOKEN');
    const status = JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status: { apis: Array<{ name: string; secrets: string[] }> } }>;
    assert.deepEqual(status[0]?.status.apis.find((a) => a.name === 'vault')?.secrets, ['P_TEST_TOKEN']);
    const seen = await shown();
    assert.ok(!seen.includes(secret) && !seen.includes(hex(secret)), 'no value in status, events, list or logs');
    const modes = await onDroplet(['sh', '-c', 'stat -c "%a %U %n" /var/lib/plumb/state.json /var/lib/plumb/instances/vault@*.env']);
    for (const line of modes.trim().split('\n')) assert.match(line, /^600 root /, modes);
  });

  test('a redeploy with new --env keeps the secret; --file sets another; setting the same value again restarts nothing', async () => {
    await ok(await user.plumb(['deploy', await apiDir(envApi('s2')), '--name', 'vault', '--env', 'P_TEST_MODE=again', '--wait']));
    assert.deepEqual(await json('/vault/env'), { P_TEST_MODE: hex('again'), P_TEST_TOKEN: hex(secret) });
    const file = path.join(user.configHome, 'other-secret');
    await writeFile(file, `${other}\n`, { mode: 0o600 });
    await ok(await user.plumb(['secrets', 'set', 'vault', 'P_TEST_OTHER', '--file', file, '--wait']));
    assert.deepEqual(await json('/vault/env'), { P_TEST_MODE: hex('again'), P_TEST_OTHER: hex(other), P_TEST_TOKEN: hex(secret) });
    const same = await user.plumb(['secrets', 'set', 'vault', 'P_TEST_OTHER', '--file', file, '--json']);
    await ok(same);
    const unchanged = JSON.parse(same.stdout) as { keys: string[]; set: string[]; restarted: boolean };
    assert.deepEqual([unchanged.keys, unchanged.set, unchanged.restarted], [['P_TEST_OTHER', 'P_TEST_TOKEN'], ['P_TEST_OTHER'], false]);
  });

  test('unset takes it away from the workers; an unknown name, a bad name, empty stdin and a multi-line value are refused in one line, nothing changes', async () => {
    await ok(await user.plumb(['secrets', 'unset', 'vault', 'P_TEST_OTHER', '--wait']));
    assert.deepEqual(await json('/vault/env'), { P_TEST_MODE: hex('again'), P_TEST_TOKEN: hex(secret) });
    const before = await serving();
    oneLineRefusal(await user.plumb(['secrets', 'unset', 'vault', 'P_TEST_NOPE']), /vault has no secret P_TEST_NOPE/);
    oneLineRefusal(await user.plumb(['secrets', 'set', 'vault', 'PLUMB_X'], { input: 'x' }), /reserved for plumb/);
    oneLineRefusal(await user.plumb(['secrets', 'set', 'vault', 'P_TEST_EMPTY'], { input: '' }), /no value on stdin/);
    const multi = await user.plumb(['secrets', 'set', 'vault', 'P_TEST_MULTI'], { input: `line one ${other}\nline two\n` });
    oneLineRefusal(multi, /P_TEST_MULTI value: .*newline/);
    assert.ok(!multi.stderr.includes(other), multi.stderr);
    assert.equal(await serving(), before);
    assert.equal((await user.plumb(['secrets', 'list', 'vault'])).stdout.trim(), 'P_TEST_TOKEN');
  });

  test('typed at a terminal the value is not echoed; status text names both secrets; an agent rebuilding its state with no backup keeps them secrets; --group with no droplet tagged is refused', async () => {
    const typed = `typed-${randomUUID()}`;
    const terminal = await typeAtPrompt(['secrets', 'set', 'vault', 'P_TEST_TYPED', '--wait'], /typing is not shown/, typed);
    assert.equal(terminal.exitCode, 0, terminal.screen);
    assert.ok(!terminal.screen.includes(typed), `the value is not on the screen:\n${terminal.screen}`);
    assert.match(terminal.screen, /vault: set P_TEST_TYPED; restarted/);
    assert.deepEqual(await json('/vault/env'), { P_TEST_MODE: hex('again'), P_TEST_TOKEN: hex(secret), P_TEST_TYPED: hex(typed) });
    const row = (await user.plumb(['status'])).stdout.split('\n').find((l) => l.startsWith('  vault')) ?? '';
    assert.match(row, /\sP_TEST_TOKEN,P_TEST_TYPED$/);
    // A damaged state.json and no backup: the agent rebuilds from what is on disk.
    await onDroplet(['sh', '-c', 'echo garbage > /var/lib/plumb/state.json && rm -f /var/lib/plumb/state.json.backup && systemctl restart plumb-agent']);
    assert.ok(await agentAnswersAgain(user), 'the agent answers after its rebuild');
    assert.equal((await user.plumb(['secrets', 'list', 'vault'])).stdout.trim(), 'P_TEST_TOKEN\nP_TEST_TYPED');
    await ok(await user.plumb(['deploy', await apiDir(envApi('s3')), '--name', 'vault', '--env', 'P_TEST_MODE=rebuilt', '--wait']));
    assert.deepEqual(await json('/vault/env'), { P_TEST_MODE: hex('rebuilt'), P_TEST_TOKEN: hex(secret), P_TEST_TYPED: hex(typed) }, 'a deploy after the rebuild gives new --env and keeps the secrets');
    oneLineRefusal(await user.plumb(['secrets', 'list', 'vault', '--group', 'nobody']), /no droplet carries the tag plumb-group:nobody/);
    await ok(await user.plumb(['secrets', 'unset', 'vault', 'P_TEST_TYPED']));
  });
});

describe('deploy flags', () => {
  removedAfter('pathed', 'health', 'ignored', 'kept');
  test('--path /api/v1 --forward --json: served under the path and at /, one JSON result on stdout, progress on stderr', async () => {
    const run = await user.plumb(['deploy', await apiDir(sumApi('p1')), '--name', 'pathed', '--path', '/api/v1', '--forward', '--json']);
    await ok(run);
    const result = JSON.parse(run.stdout) as { name: string; path: string; forward: boolean; release: string; ports: number[]; files: number };
    assert.deepEqual([result.name, result.path, result.forward, result.files, result.ports.length], ['pathed', '/api/v1', true, 1, 1]);
    assert.match(result.release, /^\d{8}T\d{6}Z-[0-9a-f]{4}$/);
    assert.doesNotThrow(() => JSON.parse(run.stdout), 'nothing but JSON on stdout');
    assert.match(run.stderr, /switching traffic/, 'the progress went to stderr');
    assert.deepEqual(await json('/api/v1/version'), ['p1']);
    assert.deepEqual(await json('/version'), ['p1'], 'forwarded at /');
    assert.equal((await get('/pathed/version')).status, 404, 'not under its name');
  });

  test('--health-path: a release whose health path answers 200 goes live, one whose path answers 503 is refused and the old one serves; the path is kept for the API', async () => {
    const health = (version: string, status: number) =>
      sumApi(version, `
#* @get /ready
function(res) {
  res$status <- ${status}
  "${status === 200 ? 'ready' : 'not ready'}"
}
`);
    await ok(await user.plumb(['deploy', await apiDir(health('h1', 200)), '--name', 'health', '--health-path', '/ready']));
    const refused = await user.plumb(['deploy', await apiDir(health('h2', 503)), '--name', 'health', '--health-path', '/ready', '--health-timeout', '30']);
    assert.equal(refused.exitCode, 1);
    assert.match(refused.stderr, /failed at "health check"/);
    assert.match(refused.stderr, /\/ready answered 503/);
    assert.deepEqual(await json('/health/version'), ['h1']);
    // The API keeps its health path: a later deploy without the flag is held to it too.
    const again = await user.plumb(['deploy', await apiDir(health('h3', 503)), '--name', 'health', '--health-timeout', '30']);
    assert.equal(again.exitCode, 1);
    assert.match(again.stderr, /\/ready answered 503/);
    assert.deepEqual(await json('/health/version'), ['h1']);
  });

  test('.plumbignore leaves files and directories out of the bundle, and .RData out by default', async () => {
    const dir = await apiDir({
      ...sumApi('i1'),
      '.plumbignore': '# not needed on the droplet\nsecrets.txt\nscratch/\n*.csv\n!keep.csv\n',
      'secrets.txt': 'password',
      'scratch/big.bin': 'x'.repeat(1000),
      'data/raw.csv': 'a,b',
      'keep.csv': 'a,b',
      '.RData': 'workspace',
      'R/helpers.R': 'helper <- function() 1',
    });
    const run = await user.plumb(['deploy', dir, '--name', 'ignored', '--json']);
    await ok(run);
    assert.equal((JSON.parse(run.stdout) as { files: number }).files, 3);
    const files = await onDroplet(['sh', '-c', 'cd /var/plumber/ignored/current/ && find . -type f | sort']);
    assert.deepEqual(files.split('\n'), ['./R/helpers.R', './keep.csv', './plumber.R']);
  });

  test(`--drain-timeout past ${DRAIN_TIMEOUT_MAX_MS / 3600_000} h is refused in one line, and nothing changes`, async () => {
    const before = await serving();
    oneLineRefusal(await user.plumb(['deploy', await apiDir(sumApi('d1')), '--name', 'pathed', '--drain-timeout', String(DRAIN_TIMEOUT_MAX_MS / 1000 + 1)]), /--drain-timeout/);
    assert.equal(await serving(), before);
  });

  test('--keep 2: after three deploys two releases are kept, on disk and in `plumb releases`', async () => {
    for (const v of ['k1', 'k2', 'k3']) await ok(await user.plumb(['deploy', await apiDir(sumApi(v)), '--name', 'kept', '--keep', '2', '--wait']));
    // Old releases go just after a deploy's answer (ops/prune.ts).
    const { listed, onDisk } = await settled(
      async () => ({
        listed: JSON.parse((await user.plumb(['releases', 'kept', '--json'])).stdout) as { releases: Array<{ id: string; live: boolean }> },
        onDisk: (await onDroplet(['ls', '/var/plumber/kept/releases'])).split('\n'),
      }),
      (s) => s.listed.releases.length === 2 && s.onDisk.length === 2,
    );
    assert.deepEqual(listed.releases.map((r) => r.live), [false, true]);
    assert.deepEqual(onDisk, listed.releases.map((r) => r.id));
  });
});

describe('rollback refusals', () => {
  removedAfter('single');
  test('an API with one release: "nothing before" and "already live", each one line, nothing changes', async () => {
    await ok(await user.plumb(['deploy', await apiDir(sumApi('only')), '--name', 'single']));
    const release = (JSON.parse((await user.plumb(['releases', 'single', '--json'])).stdout) as { releases: Array<{ id: string }> }).releases[0]?.id ?? '';
    const before = await serving();
    oneLineRefusal(await user.plumb(['rollback', 'single']), new RegExp(`single has no release before the live one \\(${release}\\)`));
    oneLineRefusal(await user.plumb(['rollback', 'single', '--to', release]), new RegExp(`release ${release} is already live`));
    assert.equal(await serving(), before);
    assert.deepEqual(await json('/single/version'), ['only']);
  });
});

describe('restart', () => {
  removedAfter('busy');
  test('three workers restarted under load: every worker is a new R process, and no request fails', async () => {
    await ok(await user.plumb(['deploy', await apiDir(sumApi('r1')), '--name', 'busy', '--workers', '3', '--wait']));
    const pidsNow = async () => (await onDroplet(['sh', '-c', 'for u in $(systemctl list-units --no-legend --plain --state=active "plumber-busy@*" | cut -d" " -f1); do systemctl show -P MainPID "$u"; done'])).split('\n').sort();
    const before = await pidsNow();
    assert.equal(before.length, 3);
    const load = startLoad(`http://${address}/busy/add?a=1&b=2`, { rps: 10, maxMs: 180_000 });
    const restarted = await user.plumb(['restart', 'busy', '--wait']);
    const report = await load.stop();
    await ok(restarted);
    assert.equal(report.failed, 0, report.failures.join('\n'));
    assert.ok(report.ok > 0);
    const after = await pidsNow();
    assert.equal(after.length, 3);
    assert.deepEqual(after.filter((pid) => before.includes(pid)), [], 'no worker kept its process');
  });
});

describe('logs', () => {
  removedAfter('loud');
  const shout = async (msg: string) => assert.deepEqual(await json(`/loud/shout?msg=${msg}`), ['ok']);
  const logged = async (args: string[], line: RegExp) => {
    // The journal may take a moment to have the line: ask again until it shows, then stop.
    for (let i = 0; i < 40; i++) {
      const run = await user.plumb(['logs', 'loud', ...args]);
      await ok(run);
      if (line.test(run.stdout)) return run.stdout;
    }
    assert.fail(`plumb logs loud ${args.join(' ')} never showed ${line}`);
  };

  test('--since a moment between two lines shows the later and not the earlier; --json gives one object per line', async () => {
    await ok(await user.plumb(['deploy', await apiDir(sumApi('l1')), '--name', 'loud']));
    await shout('earlier');
    await logged(['-n', '20'], /shout: earlier/);
    // The earlier line is in the journal now, so it was stamped before this moment (one clock).
    const between = `${new Date().toISOString().replace('T', ' ').replace('Z', '')} UTC`;
    await shout('later');
    const since = await logged(['--since', between], /shout: later/);
    assert.doesNotMatch(since, /shout: earlier/);

    const lines = (await logged(['-n', '5', '--json'], /shout: later/)).trim().split('\n');
    const entries = lines.map((l) => JSON.parse(l) as { time: number; unit: string; message: string });
    const later = entries.find((e) => e.message === 'shout: later');
    assert.ok(later, JSON.stringify(entries));
    assert.match(later.unit, /^plumber-loud@\d+\.service$/);
    assert.ok(Math.abs(later.time / 1000 - Date.now()) < 24 * 3600_000, 'time is in microseconds since the epoch');
  });

  test('logs -f follows across a redeploy: the new release writes from a worker port the API never had, and its lines show', async () => {
    const child = spawn(process.execPath, [PLUMB_CLI, 'logs', 'loud', '-f', '-n', '0'], { env: { ...process.env, ...user.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    const workerOf = (msg: string) => new RegExp(`(plumber-loud@\\d+)  shout: ${msg}$`, 'm').exec(out)?.[1];
    try {
      // Until a first line shows, the follow is not set up yet (connecting, journalctl starting).
      for (let i = 0; i < 50 && !workerOf('before'); i++) {
        await shout('before');
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(workerOf('before'), out);
      await ok(await user.plumb(['deploy', await apiDir(sumApi('l2')), '--name', 'loud']));
      assert.deepEqual(await json('/loud/version'), ['l2']);
      await shout('after');
      for (let i = 0; i < 300 && !workerOf('after'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(workerOf('after'), `the new release's line while following:\n${out}`);
      assert.notEqual(workerOf('after'), workerOf('before'), 'written by the new worker');
      child.kill('SIGINT');
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 0);
    } finally {
      child.kill();
    }
  });

  test(`a --since journalctl cannot read, or more than ${LOGS_MAX_LINES} lines, is refused in one line`, async () => {
    oneLineRefusal(await user.plumb(['logs', 'loud', '--since', 'yesterday; rm -rf /']), /--since/);
    oneLineRefusal(await user.plumb(['logs', 'loud', '-n', String(LOGS_MAX_LINES + 1)]), new RegExp(`${LOGS_MAX_LINES}`));
  });
});

describe('workers', () => {
  removedAfter('quitter');
  /** The pid the API answers with once it is not `old` (R started again), or null if it never is. */
  async function newPid(old: number): Promise<number | null> {
    for (let i = 0; i < 120; i++) {
      const pid = ((await json('/quitter/pid').catch(() => [old])) as number[])[0];
      if (typeof pid === 'number' && pid !== old) return pid;
      await new Promise((r) => setTimeout(r, 500));
    }
    return null;
  }

  test('a worker whose R ends by itself (quit() with status 0, a SIGTERM from outside) is started again', async () => {
    await ok(await user.plumb(['deploy', await apiDir(sumApi('q1', '#* @get /quit\nfunction() quit(save = "no", status = 0)\n')), '--name', 'quitter']));
    const first = ((await json('/quitter/pid')) as number[])[0] ?? 0;
    await get('/quitter/quit').catch(() => undefined);
    const second = await newPid(first);
    assert.ok(second !== null, 'R was started again after a clean exit');
    await onDroplet(['kill', '-TERM', String(second)]);
    assert.ok((await newPid(second)) !== null, 'R was started again after a SIGTERM it did not get from systemd');
    assert.deepEqual(await json('/quitter/version'), ['q1']);
  });
});

describe('the agent owns its files', () => {
  removedAfter('edited');
  test('hand edits to nginx\'s file and to a unit are put back when the agent restarts, and the API serves', async () => {
    await ok(await user.plumb(['deploy', await apiDir(sumApi('e1')), '--name', 'edited']));
    const files = 'cat /etc/nginx/conf.d/plumb.conf /etc/systemd/system/plumber-edited@.service';
    const rendered = await onDroplet(['sh', '-c', files]);
    await onDroplet(['sh', '-c', 'echo "# edited by hand" >> /etc/nginx/conf.d/plumb.conf && sed -i "s/^Restart=.*/Restart=no/" /etc/systemd/system/plumber-edited@.service']);
    assert.notEqual(await onDroplet(['sh', '-c', files]), rendered, 'the edits landed');
    await onDroplet(['systemctl', 'restart', 'plumb-agent']);
    assert.ok(await agentAnswersAgain(user), 'the agent answers after its restart');
    assert.equal(await onDroplet(['sh', '-c', files]), rendered);
    assert.equal(await onDroplet(['nginx', '-t']).then(() => 'valid'), 'valid');
    assert.deepEqual(await json('/edited/version'), ['e1']);
  });
});

describe('droplets and destroy, seen from another machine', () => {
  let teammate: PlumbUser;
  before(async () => {
    teammate = await plumbUser(lab);
    // A teammate's export naming a droplet since deleted from DigitalOcean's dashboard.
    const exported = JSON.parse((await user.plumb(['droplets', 'export'])).stdout) as { droplets: Array<Record<string, unknown>> };
    const gone = { ...exported.droplets[0], name: 'vanished', id: 999_999_991, uuid: randomUUID(), ipv4: '10.213.250.2' };
    const file = path.join(teammate.configHome, 'export.json');
    await writeFile(file, JSON.stringify({ plumbDroplets: 1, droplets: [gone] }));
    await ok(await teammate.plumb(['droplets', 'import', file]));
  });

  test('the table shows a droplet DigitalOcean no longer has as gone, and one made by another controller as such', async () => {
    const run = await teammate.plumb(['droplets']);
    await ok(run);
    const [header, ...rows] = run.stdout.split('\n').map((l) => l.split(/\s{2,}/));
    assert.deepEqual(header, ['NAME', 'ID', 'ADDRESS', 'STATUS', 'GROUP', 'REGION', 'SIZE', 'AGENT']);
    const byName = Object.fromEntries(rows.map((r) => [r[0], r]));
    assert.deepEqual([byName['vanished']?.[1], byName['vanished']?.[3], byName['vanished']?.[4], byName['vanished']?.[7]], ['999999991', 'gone', '-', 'enrolled']);
    assert.deepEqual([byName['everyday']?.[1], byName['everyday']?.[2], byName['everyday']?.[3], byName['everyday']?.[4], byName['everyday']?.[7]], [String(dropletId), address, 'active', '-', 'not this controller']);
    assert.equal(rows.length, 2, run.stdout);
  });

  test('destroying a droplet that is already gone says so, forgets it, and touches no other droplet', async () => {
    const run = await teammate.plumb(['destroy', 'vanished', '--yes']);
    await ok(run);
    assert.equal(run.stdout.trim(), 'droplet vanished (id 999999991) was already gone; forgotten');
    const rows = JSON.parse((await teammate.plumb(['droplets', '--json'])).stdout) as Array<{ name: string; foreign: boolean; status: string }>;
    assert.deepEqual(rows.map((r) => [r.name, r.foreign, r.status]), [['everyday', true, 'active']]);
    assert.match((await get('/')).body, /no API is served at \//, 'the droplet\'s nginx still answers');
  });
});
