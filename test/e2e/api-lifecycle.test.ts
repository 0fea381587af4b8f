import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { BUNDLE_MAX_BYTES, BUNDLE_MAX_EXTRACTED_BYTES } from '@plumb/shared';
import { rawTar } from '../cases/raw-tar.js';
import type { Lab } from '../lab/lab.js';
import { apiDir, crashingApi, sleepyApi, sumApi } from './api-fixtures.js';
import { clientFor, httpGet, waitAction } from './helpers.js';
import { agentAnswersAgain, apiStatus, PLUMB_CLI, rawUpload, sharedDroplet, withoutSpares, type PlumbUser } from './plumb.js';

/**
 * The seed's do_deploy_api, do_remove_api, do_forward and the journalctl/systemctl it left to the
 * user, as plumb commands: the real binary against a lab droplet.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;

const get = (path: string) => httpGet(`http://${address}${path}`, 5000);
const json = async (path: string) => JSON.parse((await get(path)).body) as unknown;
const onDroplet = (argv: string[], timeoutMs?: number) => lab.droplet(dropletId).exec(argv, timeoutMs === undefined ? {} : { timeoutMs });

/**
 * What bad input must leave untouched: nginx's config, every plumber unit byte for byte, and which
 * workers start at boot (a failed release's workers are linked while R loads, and must be unlinked).
 * What is missing, as missing: a test run alone finds a fresh droplet.
 */
const serving = () => withoutSpares(user, () => onDroplet(['sh', '-c', 'cat /etc/nginx/conf.d/plumb.conf; for f in /etc/systemd/system/plumber-*; do echo "== $f"; cat "$f" 2>&1; done; ls /var/lib/plumb/instances 2>&1; ls /etc/systemd/system/multi-user.target.wants | grep "^plumber-"; true']));
const nginxTest = () => onDroplet(['nginx', '-t']);
/** sum's workers that start at boot: their links in a `.wants` directory (a link left names a unit gone: a failed start at every boot). */
const bootLinks = () => onDroplet(['sh', '-c', 'ls /etc/systemd/system/*.wants/ | grep "^plumber-sum" | sort || true']);

/** An endpoint that writes n lines at once (logs -f's burst). */
const BURST_R = '#* @get /burst\nfunction(n = 100) {\n  for (i in seq_len(as.integer(n))) message("burst ", i)\n  "ok"\n}\n';

sharedDroplet('apis', (shared) => void ({ lab, user, id: dropletId, address } = shared));

describe('deploy', () => {
  test('a two-endpoint API at /sum answers from R, with plumber docs, files and a unit as the seed had', async () => {
    const deployed = await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'sum']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.match(deployed.stdout, new RegExp(`http://${address.replaceAll('.', '\\.')}/sum/`));
    assert.deepEqual(await json('/sum/add?a=1&b=2'), [3]);
    const docs = await get('/sum/__docs__/');
    assert.equal(docs.status, 200);
    assert.match(docs.body, /swagger/i);
    assert.equal((await get('/sum/openapi.json')).status, 200);
    assert.match(await onDroplet(['ls', '/var/plumber/sum/current/']), /plumber\.R/);
    // The worker plumb status names (a warm spare, plumber-sum@PORT too, is not started at boot).
    const unit = `plumber-sum@${(await apiStatus(user, 'sum'))?.workers[0]?.port}.service`;
    assert.ok((await onDroplet(['sh', '-c', 'systemctl list-units --no-legend --plain "plumber-sum@*" | cut -d" " -f1'])).split('\n').includes(unit), unit);
    assert.match(unit, /^plumber-sum@\d+\.service$/);
    assert.equal(await onDroplet(['systemctl', 'is-enabled', unit]), 'enabled');
    assert.equal(await onDroplet(['ps', '-o', 'user=', '-p', await onDroplet(['systemctl', 'show', '-p', 'MainPID', '--value', unit])]), 'plumber-sum');
    await nginxTest();
  });

  test('deploying again with changed code serves the new answer', async () => {
    // --wait: the tests after this one compare the droplet before and after a refused deploy, so
    // the previous release's workers must have finished draining (their env files go with them).
    const deployed = await user.plumb(['deploy', await apiDir(sumApi('v2', BURST_R)), '--name', 'sum', '--wait']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.deepEqual(await json('/sum/version'), ['v2']);
    await nginxTest();
    // Only the live workers start at boot: the previous release's were unlinked as they stopped.
    const live = (await apiStatus(user, 'sum'))?.workers.map((w) => `plumber-sum@${w.port}.service`).sort() ?? [];
    assert.equal(await bootLinks(), live.join('\n'));
  });

  test('a release whose R code fails to start leaves the old one serving and shows the step and the log', async () => {
    const before = await serving();
    const deployed = await user.plumb(['deploy', await apiDir(crashingApi), '--name', 'sum']);
    assert.equal(deployed.exitCode, 1);
    assert.match(deployed.stderr, /failed at "health check"/);
    assert.match(deployed.stderr, /a data file is missing/);
    assert.deepEqual(await json('/sum/version'), ['v2']);
    assert.equal(await serving(), before);
  });

  test('a release that never answers (past the health timeout) leaves the old one serving', async () => {
    const before = await serving();
    const deployed = await user.plumb(['deploy', await apiDir(sleepyApi), '--name', 'sum', '--health-timeout', '5']);
    assert.equal(deployed.exitCode, 1);
    assert.match(deployed.stderr, /failed at "health check".*no HTTP answer/);
    assert.deepEqual(await json('/sum/version'), ['v2']);
    assert.equal(await serving(), before);
  });
});

describe('bad input', () => {
  const cases: Array<[string, () => Promise<string[]>, RegExp]> = [
    ['name ../x', async () => ['deploy', await apiDir(sumApi('x')), '--name', '../x'], /invalid API name/],
    ['name a;b', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'a;b'], /invalid API name/],
    ['name A B', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'A B'], /invalid API name/],
    ['a 200-character name', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'a'.repeat(200)], /invalid API name/],
    ['a path with ..', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'ok', '--path', '/a/../b'], /invalid path/],
    ['a path with a space', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'ok', '--path', '/a b'], /invalid path/],
    ['a missing directory', async () => ['deploy', '/nonexistent/api', '--name', 'ok'], /does not exist|no such|not found/i],
    ['a directory without plumber.R', async () => ['deploy', await apiDir({ 'README.md': 'hi' }), '--name', 'ok'], /plumber\.R/],
    ['an unknown droplet', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'ok', '--droplet', 'nope'], /no droplet "nope"/],
    ['an unknown API', async () => ['remove', 'nope', '--yes'], /no API "nope"/],
    ['an invalid --env key', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'ok', '--env', '1BAD=x'], /invalid --env/],
    ['a number of workers that is a word', async () => ['scale', 'sum', 'many'], /^plumb: invalid workers "many": a whole number from 1 to 16$/m],
    ['a number of workers in exponent form', async () => ['deploy', await apiDir(sumApi('x')), '--name', 'sum', '--workers', '1e1'], /^plumb: invalid --workers "1e1": a whole number from 1 to 16$/m],
  ];
  for (const [what, args, message] of cases) {
    test(`${what}: one line, non-zero exit, nginx and units byte-identical`, async () => {
      const before = await serving();
      const result = await user.plumb(await args());
      assert.notEqual(result.exitCode, 0);
      const lines = result.stderr.trim().split('\n').filter((l) => !l.startsWith('['));
      assert.match(lines[0] ?? '', /^plumb: /);
      assert.match(result.stderr, message);
      assert.ok(lines.length <= 2, `one line and at most a hint:\n${result.stderr}`);
      assert.equal(await serving(), before);
    });
  }
});

describe('confirmation', () => {
  test('remove without --yes, off a terminal, refuses with exit 2 and the API and its data stay', async () => {
    await onDroplet(['sh', '-c', 'echo kept > /var/plumber/sum/data/marker']);
    const before = await serving();
    const result = await user.plumb(['remove', 'sum']);
    assert.equal(result.exitCode, 2, result.stderr);
    assert.match(result.stderr, /^plumb: refusing to remove sum without confirmation: stdin is not a terminal\n  add --yes$/);
    assert.equal(await serving(), before);
    assert.deepEqual(await json('/sum/add?a=1&b=2'), [3]);
    assert.equal(await onDroplet(['cat', '/var/plumber/sum/data/marker']), 'kept');
  });
});

describe('forward, remove, restart, crash and reboot', () => {
  test('forward sum: / serves it; unforward: / stops', async () => {
    assert.equal((await user.plumb(['forward', 'sum'])).exitCode, 0);
    assert.deepEqual(await json('/add?a=1&b=2'), [3]);
    await nginxTest();
    assert.equal((await user.plumb(['unforward'])).exitCode, 0);
    assert.equal((await get('/add?a=1&b=2')).status, 404);
    assert.deepEqual(await json('/sum/add?a=2&b=2'), [4]);
    assert.equal((await user.plumb(['forward', 'sum'])).exitCode, 0);
  });

  test('kill -9 of the R process: it is back within seconds', async () => {
    const pid = JSON.parse((await get('/sum/pid')).body) as number[];
    await onDroplet(['kill', '-9', String(pid[0])]);
    const deadline = Date.now() + 15_000;
    let answer: number[] | undefined;
    while (Date.now() < deadline) {
      answer = await json('/sum/pid').then((v) => v as number[], () => undefined);
      if (answer && answer[0] !== pid[0]) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(answer && answer[0] !== pid[0], 'a new R process answers');
  });

  test('restarting the agent changes nothing that serves', async () => {
    const before = await serving();
    const pid = await json('/sum/pid');
    await onDroplet(['systemctl', 'restart', 'plumb-agent']);
    assert.deepEqual(await json('/sum/pid'), pid);
    assert.ok(await agentAnswersAgain(user), 'the agent answers plumb again');
    assert.deepEqual(await json('/sum/pid'), pid, 'and its start changed no worker');
    assert.equal(await serving(), before);
  });

  test('plumb restart gives a new R process', async () => {
    const pid = await json('/sum/pid');
    const result = await user.plumb(['restart', 'sum']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.notDeepEqual(await json('/sum/pid'), pid);
  });

  test('after a reboot of the droplet every API answers with no controller action', async () => {
    const api = clientFor(lab);
    const { action } = (await api.droplet.rebootDroplet({ droplet_id: dropletId })).data;
    assert.equal(await waitAction(api, action.id), 'completed');
    const deadline = Date.now() + 60_000;
    let answer: unknown;
    while (Date.now() < deadline && answer === undefined) {
      answer = await json('/sum/add?a=1&b=2').catch(() => undefined);
      if (answer === undefined) await new Promise((r) => setTimeout(r, 500));
    }
    assert.deepEqual(answer, [3]);
    assert.deepEqual(await json('/add?a=1&b=2'), [3], 'the forward survived too');
  });
});

describe('logs and status', () => {
  test('status shows the API, its release and the forward', async () => {
    const result = await user.plumb(['status', '--json']);
    assert.equal(result.exitCode, 0, result.stderr);
    const [droplet] = JSON.parse(result.stdout) as Array<{ status: { apis: Array<{ name: string; state: string; forwarded: boolean }>; forward: string } }>;
    assert.equal(droplet?.status.forward, 'sum');
    assert.deepEqual(droplet?.status.apis.map((a) => [a.name, a.state, a.forwarded]), [['sum', 'active', true]]);
    const text = await user.plumb(['status']);
    assert.match(text.stdout, /sum\s+active\s+http:\/\/\S+\/sum\/ \(and \/\)/);
  });

  test("status says what systemd says, also after systemd re-executes (the agent's bus link drops) and dbus-daemon restarts", async () => {
    type Worker = { port: number; state: string; pid: number | null; since: string | null; restarts: number };
    const workers = async () => {
      const result = await user.plumb(['status', '--json']);
      assert.equal(result.exitCode, 0, result.stderr);
      const [droplet] = JSON.parse(result.stdout) as Array<{ status: { apis: Array<{ name: string; workers: Worker[] }> } }>;
      return droplet!.status.apis.find((a) => a.name === 'sum')!.workers;
    };
    const systemdSays = async (ws: Worker[]) =>
      (await onDroplet(['systemctl', 'show', '--property=ActiveState,MainPID,NRestarts,ActiveEnterTimestamp', '--', ...ws.map((w) => `plumber-sum@${w.port}.service`)]))
        .trim()
        .split(/\n\n+/)
        .map((block) => Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])) as Record<string, string>);
    const agrees = async (when: string) => {
      const ws = await workers();
      assert.ok(ws.length > 0, `${when}: sum has workers`);
      assert.deepEqual(
        ws.map((w) => [w.state, w.pid ?? 0, w.restarts, w.since ?? '']),
        (await systemdSays(ws)).map((p) => [p.ActiveState, Number(p.MainPID), Number(p.NRestarts), p.ActiveEnterTimestamp]),
        `${when}: plumb status and systemctl show agree`,
      );
    };
    const since = (await onDroplet(['date', '+%Y-%m-%d %H:%M:%S'])).trim();
    await agrees('first');
    await onDroplet(['systemctl', 'daemon-reexec']);
    await agrees('after systemd re-executed');
    await onDroplet(['systemctl', 'restart', 'dbus']);
    await agrees('after dbus-daemon restarted');
    const journal = await onDroplet(['journalctl', '-u', 'plumb-agent', '--since', since, '-o', 'cat', '--no-pager']);
    assert.doesNotMatch(journal, /asking systemctl instead/, 'the agent never had to fall back to systemctl');
  });

  test('logs -n 5 shows the last five lines', async () => {
    for (let i = 0; i < 7; i++) await get(`/sum/shout?msg=line${i}`);
    await new Promise((r) => setTimeout(r, 500));
    const result = await user.plumb(['logs', 'sum', '-n', '5']);
    assert.equal(result.exitCode, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.equal(lines.length, 5);
    assert.match(lines[4] ?? '', /shout: line6/);
  });

  test('logs -f shows a line the API writes after the request, after the lines before it; Ctrl-C exits 0', async () => {
    const child = spawn(process.execPath, [PLUMB_CLI, 'logs', 'sum', '-f', '-n', '0'], { env: { ...process.env, ...user.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    // Until a first line shows, the follow is not set up yet (connecting, journalctl starting).
    for (let i = 0; i < 50 && !out.includes('shout: warm-up'); i++) {
      await get(`/sum/shout?msg=warm-up${i}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await get('/sum/shout?msg=followed');
    // How soon it shows is for bench/; here: it shows while following, in order.
    for (let i = 0; i < 300 && !out.includes('shout: followed'); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /shout: followed/);
    assert.ok(out.lastIndexOf('shout: warm-up') < out.indexOf('shout: followed'), 'after the lines before it');
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
  });

  test('logs -f shows every line once and in order, read from the journal file ahead of journalctl: short lines, a long one journald compresses, a burst of 100', async () => {
    const since = (await onDroplet(['date', '+%Y-%m-%d %H:%M:%S'])).trim();
    const child = spawn(process.execPath, [PLUMB_CLI, 'logs', 'sum', '-f', '-n', '0', '--json'], { env: { ...process.env, ...user.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const messages: string[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => messages.push((JSON.parse(line) as { message: string }).message));
    const long = `seq-3-${'L'.repeat(1500)}`;
    try {
      for (let i = 0; i < 50 && !messages.some((m) => m.startsWith('shout: warm-up')); i++) {
        await get(`/sum/shout?msg=warm-up${i}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      for (const msg of ['seq-1', 'seq-2', long, 'seq-4']) assert.equal((await get(`/sum/shout?msg=${msg}`)).status, 200);
      // The file read waits at the long line for journalctl, which brings what came with it too; the burst, once it showed, comes from the file.
      for (let i = 0; i < 300 && !messages.includes(`shout: ${long}`); i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal((await get('/sum/burst?n=100')).status, 200);
      await get('/sum/shout?msg=seq-5');
      for (let i = 0; i < 300 && !messages.includes('shout: seq-5'); i++) await new Promise((r) => setTimeout(r, 100));
      // journalctl's own copies come 250-500 ms after the file's: long enough for a copy shown twice to show.
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      child.kill('SIGINT');
      await once(child, 'exit');
    }
    const expected = ['shout: seq-1', 'shout: seq-2', `shout: ${long}`, 'shout: seq-4', ...Array.from({ length: 100 }, (_, i) => `burst ${i + 1}`), 'shout: seq-5'];
    assert.deepEqual(messages.filter((m) => m.startsWith('shout: seq-') || m.startsWith('burst ')), expected);
    // The file read did show lines (not journalctl alone), and never stopped. This follow's end is the one
    // with all its lines (the last test's follow may end within the same second).
    let agent = '';
    const ends = () => [...agent.matchAll(/"msg":"logs -f ended".*"entries":(\d+),"fromFile":(\d+)/g)].map((m) => ({ entries: Number(m[1]), fromFile: Number(m[2]), line: m[0] }));
    const thisFollow = () => ends().find((e) => e.entries >= expected.length);
    for (let i = 0; i < 50 && !thisFollow(); i++) {
      await new Promise((r) => setTimeout(r, 100));
      agent = await onDroplet(['journalctl', '-u', 'plumb-agent', '--since', since, '-o', 'cat', '--no-pager']);
    }
    assert.doesNotMatch(agent, /stopped reading the journal file|following with journalctl alone/);
    const ended = thisFollow();
    assert.ok(ended && ended.fromFile > 50, `most lines came from the file: ${ended?.line ?? ends().map((e) => e.line).join('; ')}`);
  });
});

describe('an unreachable droplet', () => {
  test('status exits 3 with and without --json, and so does a command that needs the agent', async () => {
    await onDroplet(['systemctl', 'stop', 'plumb-agent']);
    try {
      const text = await user.plumb(['status']);
      assert.equal(text.exitCode, 3, text.stderr);
      assert.match(text.stdout, /^apis\s+\S+\s+UNREACHABLE: /);
      const asJson = await user.plumb(['status', '--json']);
      assert.equal(asJson.exitCode, 3, asJson.stderr);
      assert.equal((JSON.parse(asJson.stdout) as Array<{ code?: string }>)[0]?.code, 'AGENT_UNREACHABLE');
      const releases = await user.plumb(['releases', 'sum', '--json']);
      assert.equal(releases.exitCode, 3, releases.stderr);
      assert.equal((JSON.parse(releases.stdout) as { error: { code: string } }).error.code, 'AGENT_UNREACHABLE');
    } finally {
      await onDroplet(['systemctl', 'start', 'plumb-agent']);
    }
    assert.ok(await agentAnswersAgain(user), 'the agent answers again once started');
    const named = await user.plumb(['status', '--droplet', 'apis', '--quiet']);
    assert.equal(named.exitCode, 0, named.stderr);
    assert.match(named.stdout, /sum\s+active/);
  });
});

describe('remove', () => {
  test('remove sum: /sum/ is 404 and / no longer forwards to it; none of its workers starts at boot', async () => {
    assert.notEqual(await bootLinks(), '', 'its workers start at boot while it is deployed');
    const result = await user.plumb(['remove', 'sum', '--yes']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal((await get('/sum/add?a=1&b=2')).status, 404);
    assert.equal((await get('/add?a=1&b=2')).status, 404);
    assert.equal(await onDroplet(['sh', '-c', 'ls /etc/systemd/system/ | grep -c "^plumber-sum" || true']), '0');
    assert.equal(await bootLinks(), '');
    assert.equal(await onDroplet(['sh', '-c', 'test -e /var/plumber/sum && echo present || echo gone']), 'gone');
    await nginxTest();
  });
});

describe('hostile bundles, sent with a raw client (not the CLI)', () => {
  const rawDeploy = (name: string, source: AsyncIterable<Buffer> | Buffer) => rawUpload(user, address, { type: 'deploy', name, path: `/${name}`, forward: false, env: {}, workers: 1, healthPath: null }, source);

  const hostile: Array<[string, Buffer, RegExp]> = [
    ['a ../ entry', gzipSync(rawTar([{ path: 'plumber.R', body: '1' }, { path: '../../../../tmp/plumb-escape', body: 'x' }])), /outside/],
    ['an absolute path', gzipSync(rawTar([{ path: 'plumber.R', body: '1' }, { path: '/tmp/plumb-escape', body: 'x' }])), /absolute|outside/],
    ['a symlink pointing out', gzipSync(rawTar([{ path: 'plumber.R', body: '1' }, { path: 'data', type: 'symlink', linkpath: '/tmp' }, { path: 'data/plumb-escape', body: 'x' }])), /link/i],
  ];
  for (const [what, bundle, message] of hostile) {
    test(`${what} is refused and nothing lands outside the release`, async () => {
      const before = await serving();
      await assert.rejects(rawDeploy('evil', bundle), message);
      // '../../../../tmp/x' from /var/plumber/evil/releases/ID lands in /var/tmp: look wherever an escape could land.
      assert.equal(await onDroplet(['sh', '-c', 'find / -xdev -name plumb-escape 2>/dev/null; test -e /var/plumber/evil && echo /var/plumber/evil; true']), '');
      assert.equal(await serving(), before);
    });
  }
});

describe('an API over the bundle cap', () => {
  test('plumb deploy of an API with more random data than the cap: a one-line refusal naming the file and what to do, nothing changed on the droplet', async () => {
    const before = await serving();
    const dir = await apiDir(sumApi('huge'));
    await mkdir(path.join(dir, 'data'));
    // Random bytes do not compress: the bundle passes BUNDLE_MAX_BYTES on the wire.
    const out = createWriteStream(path.join(dir, 'data/model.bin'));
    for (let i = 0; i < BUNDLE_MAX_BYTES / (1024 * 1024) + 8; i++) if (!out.write(randomBytes(1024 * 1024))) await once(out, 'drain');
    out.end();
    await once(out, 'finish');
    try {
      const refused = await user.plumb(['deploy', dir, '--name', 'huge']);
      assert.equal(refused.exitCode, 1, refused.stderr);
      const [said, hint] = refused.stderr.split('\n').filter((l) => /^plumb: |^  /.test(l));
      assert.equal(said, 'plumb: the bundle is over 200 MiB compressed, the most a droplet takes (nothing changed there); its largest files: data/model.bin (208 MiB)');
      assert.equal(hint, '  add large data to .plumbignore (e.g. data/model.bin) and have the API fetch it when it starts, into /var/plumber/huge/data/ (kept across releases)');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    assert.equal(await onDroplet(['sh', '-c', 'test -e /var/plumber/huge && echo present || echo absent']), 'absent');
    assert.equal(await serving(), before);
  });

  test(`plumb deploy of an API whose files total over ${BUNDLE_MAX_EXTRACTED_BYTES / 1024 / 1024} MiB: refused before a byte is sent, in one line with what to do`, async () => {
    const before = await serving();
    const dir = await apiDir(sumApi('vast'));
    await mkdir(path.join(dir, 'data'));
    // Sparse: a user's 1 GiB model without writing it. Zeros would compress far under the cap on the wire.
    await writeFile(path.join(dir, 'data/model.bin'), '');
    await truncate(path.join(dir, 'data/model.bin'), BUNDLE_MAX_EXTRACTED_BYTES);
    try {
      const refused = await user.plumb(['deploy', dir, '--name', 'vast']);
      assert.equal(refused.exitCode, 1, refused.stderr);
      const [said, hint, ...more] = refused.stderr.split('\n').filter((l) => /^plumb: |^  /.test(l));
      // Just over: the MiB would read the same, so the bytes are said.
      const total = /^plumb: the API's files total (\d+) bytes, over the (\d+) bytes \(1024 MiB\) a release may hold on a droplet \(nothing was sent\); its largest files: data\/model\.bin \(1024 MiB\)$/.exec(said ?? '');
      assert.ok(total, said);
      assert.ok(Number(total[1]) > BUNDLE_MAX_EXTRACTED_BYTES && Number(total[2]) === BUNDLE_MAX_EXTRACTED_BYTES, said);
      assert.equal(hint, '  add large data to .plumbignore (e.g. data/model.bin) and have the API fetch it when it starts, into /var/plumber/vast/data/ (kept across releases)');
      assert.deepEqual(more, []);
      assert.doesNotMatch(refused.stderr, /uploading/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    assert.equal(await serving(), before);
  });
});

describe('plumb.toml', () => {
  test('plumb init, edited, then plumb deploy DIR with no flags: the name, path, workers and env come from it', async () => {
    const dir = await apiDir(sumApi('toml', '#* @get /mode\nfunction() Sys.getenv("MODE")\n'));
    const inited = await user.plumb(['init', dir, '--name', 'tomled']);
    assert.equal(inited.exitCode, 0, inited.stderr);
    const file = path.join(dir, 'plumb.toml');
    const edited = (await readFile(file, 'utf8')).replace('# path = "/tomled"', 'path = "/from-toml"').replace('# workers = 1', 'workers = 2').replace('# MODE = "production"', 'MODE = "from-toml"');
    await writeFile(file, edited);
    const deployed = await user.plumb(['deploy', dir, '--quiet']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.equal(deployed.stderr, '', '--quiet: no progress lines');
    assert.match(deployed.stdout, /^deployed tomled release /);
    assert.deepEqual(await json('/from-toml/mode'), ['from-toml']);
    const status = JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status: { apis: Array<{ name: string; workers: unknown[] }> } }>;
    assert.equal(status[0]?.status.apis.find((a) => a.name === 'tomled')?.workers.length, 2);
    assert.equal((await user.plumb(['remove', 'tomled', '--yes'])).exitCode, 0);
  });
});
