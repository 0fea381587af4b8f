import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { after, describe, test } from 'node:test';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { AGENT_PORT, ALERT_CERTIFICATE_DAYS, ALERT_RESTARTS, MONITOR_FAILURES_BEFORE_RESTART, MONITOR_INTERVAL_MS, MONITOR_MAX_RESTARTS, WebhookPayload, type AgentEvent, type StatusResult } from '@plumb/shared';
import { agentAnswers } from '@plumb/controller/agent/client';
import { LAB_HOST_ADDRESS } from '../lab/droplets/network.js';
import type { Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { PLUMB_CLI, sharedDroplet, userCopy, type PlumbUser } from './plumb.js';

/**
 * Health the agent reports by itself (docs/health.md): its checks and restarts, the events it
 * keeps, `plumb status` and `plumb status --watch`, and alerts POSTed to a webhook on the lab host.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;
let hook: { url: string; got: WebhookPayload[]; close(): void };

const get = (path: string, timeoutMs = 5000) => httpGet(`http://${address}${path}`, timeoutMs);
const json = async (path: string) => JSON.parse((await get(path)).body) as unknown;
const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);

/**
 * R blocks in /hang for good (plumber is single-threaded, so the worker stops answering); /spin
 * computes for a while; / is where the agent's monitor checks the worker, and /checks counts them.
 */
const endpoints = `
checks <- 0

#* The monitor's health check
#* @get /
function() {
  checks <<- checks + 1
  "ok"
}

#* How many health checks this R process has answered
#* @get /checks
function() {
  checks
}

#* Never returns
#* @get /hang
function() {
  Sys.sleep(1e6)
}

#* Busy for s seconds
#* @get /spin
function(s = 10) {
  end <- Sys.time() + as.numeric(s)
  n <- 0
  while (Sys.time() < end) n <- n + 1
  n
}
`;

/** Polls `check` every 200 ms until it holds or `ms` have passed; returns whether it held. */
async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function statusJson(as: PlumbUser = user): Promise<{ status: StatusResult; seenEventId: number | null }> {
  const result = await as.plumb(['status', '--json']);
  assert.equal(result.exitCode, 0, result.stderr);
  const [droplet] = JSON.parse(result.stdout) as Array<{ status: StatusResult; seenEventId: number | null }>;
  assert.ok(droplet?.status, result.stdout);
  return droplet;
}

/** An HTTP server on the lab host's address, which every droplet reaches: the webhook receiver. */
async function webhookReceiver(): Promise<typeof hook> {
  const got: WebhookPayload[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const parsed = WebhookPayload.safeParse(JSON.parse(body || 'null'));
      if (parsed.success) got.push(parsed.data);
      res.writeHead(parsed.success ? 204 : 400).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, LAB_HOST_ADDRESS, resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://${LAB_HOST_ADDRESS}:${port}/hook`, got, close: () => server.close() };
}

/** `plumb status --watch` as a user runs it, its output collected. */
function startWatch(): { child: ChildProcessWithoutNullStreams; out: () => string; err: () => string } {
  const child = spawn(process.execPath, [PLUMB_CLI, 'status', '--watch'], { env: { ...process.env, ...user.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  return { child, out: () => out, err: () => err };
}

async function stopWatch(watch: ReturnType<typeof startWatch>): Promise<number | null> {
  watch.child.kill('SIGINT');
  const timer = setTimeout(() => watch.child.kill('SIGKILL'), 10_000);
  const [code] = (await once(watch.child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}

sharedDroplet(
  'health',
  async (shared) => {
    ({ lab, user, id: dropletId, address } = shared);
    hook = await webhookReceiver();
    const deployed = await user.plumb(['deploy', await apiDir(sumApi('v1', endpoints)), '--name', 'sum']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
  },
);

after(async () => {
  hook?.close();
});

describe('status', () => {
  test('plumb status shows the heartbeat and the events since the last look; a second look right after shows none new', async () => {
    const first = await user.plumb(['status']);
    assert.equal(first.exitCode, 0, first.stderr);
    assert.match(first.stdout, /load \d+\.\d+ \d+\.\d+ \d+\.\d+\s+memory \S+ GiB free/);
    assert.match(first.stdout, /MEMORY/);
    assert.match(first.stdout, /sum\s+active\s.*\s[1-9]\d* MiB\s+-$/m, 'the R worker uses some memory');
    assert.match(first.stdout, /^\s+\S+ \S+Z\s+deploy\s+sum\s+release \S+ live on port \d+$/m);

    const second = await user.plumb(['status']);
    assert.equal(second.exitCode, 0, second.stderr);
    assert.match(second.stdout, /no new events since the last look/);
    assert.doesNotMatch(second.stdout, /\sdeploy\s/);

    const { status, seenEventId } = await statusJson();
    assert.equal(seenEventId, status.lastEventId);
    const [worker] = status.heartbeat.workers;
    assert.equal(worker?.api, 'sum');
    assert.ok(worker.pid !== null && worker.rssBytes !== null && worker.rssBytes > 20 * 1024 * 1024, JSON.stringify(worker));
    assert.ok(worker.uptimeSeconds !== null && worker.uptimeSeconds >= 0 && worker.uptimeSeconds < 3600, JSON.stringify(worker));
    assert.ok(status.heartbeat.disk.freeBytes > 0 && status.heartbeat.memory.totalBytes > 0);
    assert.deepEqual(status.heartbeat.certificates, []);
  });
});

describe('alerts', () => {
  test('a webhook that is not an http(s) URL is refused in one line, and nothing changes on the droplet', async () => {
    const before = await onDroplet(['cat', '/var/lib/plumb/state.json']);
    const result = await user.plumb(['alerts', '--webhook', 'ftp://example.com/x']);
    assert.equal(result.exitCode, 2);
    assert.match(result.stderr, /^plumb: invalid --webhook "ftp:\/\/example\.com\/x": /);
    assert.equal(await onDroplet(['cat', '/var/lib/plumb/state.json']), before);
  });

  test('--webhook on the lab host: the droplet sends a test alert at once', async () => {
    const result = await user.plumb(['alerts', '--webhook', hook.url]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stdout, /go to http:\/\/10\.213\.0\.1:\d+\/hook\n\s+a test alert was delivered \(HTTP 204\)/);
    assert.equal(hook.got.filter((p) => p.alert === 'test').length, 1);
  });
});

describe('the agent watches its workers', () => {
  test('kill -9 of a worker: a controller watching sees it down and restarted, and the webhook gets down, then up', async () => {
    const watch = startWatch();
    let exit: number | null;
    // The watch is stopped whatever happens; its exit code is checked after, so a failure above is the one shown.
    try {
      assert.ok(await until(() => /watching health/.test(watch.err()), 30_000), `the watch started: ${watch.err()}`);
      const [pid] = (await json('/sum/pid')) as number[];
      await onDroplet(['kill', '-9', String(pid)]);
      const seen = await until(() => /\s(down|restarted \(systemd\))\s+sum@\d+\s/.test(watch.out()), 30_000);
      assert.ok(seen, `the watch printed the event:\n${watch.out()}\n${watch.err()}`);
      assert.ok(await until(() => hook.got.some((p) => p.alert === 'down' && p.event?.api === 'sum'), 30_000), JSON.stringify(hook.got));
      assert.ok(await until(() => hook.got.some((p) => p.alert === 'up' && p.event?.api === 'sum'), 30_000), JSON.stringify(hook.got));
      const down = hook.got.find((p) => p.alert === 'down');
      assert.match(down?.text ?? '', /sum \(worker \d+\) is down: the R process exited/);
      assert.notDeepEqual(await json('/sum/pid'), [pid]);
    } finally {
      exit = await stopWatch(watch);
    }
    assert.equal(exit, 0, `Ctrl-C ends the watch with 0:\n${watch.err()}`);
  });

  test(`a worker busy computing past ${MONITOR_FAILURES_BEFORE_RESTART} checks is left alone (it uses CPU), and answers when done`, async () => {
    const { status: before } = await statusJson();
    const [pid] = (await json('/sum/pid')) as number[];
    const seconds = Math.round((MONITOR_FAILURES_BEFORE_RESTART + 2) * MONITOR_INTERVAL_MS / 1000);
    const spun = await get(`/sum/spin?s=${seconds}`, (seconds + 30) * 1000);
    assert.equal(spun.status, 200, spun.body);
    assert.deepEqual(await json('/sum/pid'), [pid], 'the same R process');
    const { status } = await statusJson();
    const since = status.events.filter((e) => e.id > before.lastEventId);
    assert.deepEqual(since.map((e) => e.kind), ['health-failed'], JSON.stringify(since, null, 2));
    assert.match(since[0]?.detail ?? '', /R is busy \(using CPU\)/);
  });

  test(`a worker that stops answering (R blocked in a handler) fails ${MONITOR_FAILURES_BEFORE_RESTART} checks, is restarted by the agent, and the API answers again`, async () => {
    const { status: before } = await statusJson();
    const [pid] = (await json('/sum/pid')) as number[];
    await get('/sum/hang', 2000).catch(() => undefined);
    assert.equal(await get('/sum/add?a=1&b=2', 2000).catch(() => 'no answer'), 'no answer', 'the worker is stuck');
    const back = await until(async () => (await json('/sum/add?a=1&b=2').catch(() => undefined)) !== undefined, 120_000);
    assert.ok(back, 'the API answers again');
    assert.deepEqual(await json('/sum/add?a=1&b=2'), [3]);
    assert.notDeepEqual(await json('/sum/pid'), [pid], 'a new R process');

    const { status } = await statusJson();
    const since = status.events.filter((e) => e.id > before.lastEventId);
    const kinds = since.map((e) => (e.by ? `${e.kind}:${e.by}` : e.kind));
    assert.deepEqual(kinds.slice(0, 3), ['health-failed', 'down', 'restarted:agent'], JSON.stringify(since, null, 2));
    assert.match(since[2]?.detail ?? '', new RegExp(`after ${MONITOR_FAILURES_BEFORE_RESTART} failed checks: no HTTP answer`));
    assert.ok(await until(async () => (await statusJson()).status.events.some((e) => e.id > before.lastEventId && e.kind === 'up'), 15_000), 'and up once it answers');
  });

  test('the agent restarted mid-life keeps its events, says nothing new about healthy workers, and the API keeps serving; a watch reconnects', async () => {
    const { status: before } = await statusJson();
    const pid = await json('/sum/pid');
    const watch = startWatch();
    let exit: number | null;
    try {
      assert.ok(await until(() => /watching health/.test(watch.err()), 30_000), watch.err());
      await onDroplet(['systemctl', 'restart', 'plumb-agent']);
      assert.ok(await until(() => agentAnswers({ host: address, port: AGENT_PORT }), 30_000), 'the agent answers again');
      assert.deepEqual(await json('/sum/pid'), pid, 'the R worker was not touched');

      const { status: afterRestart } = await statusJson();
      const kept = (events: AgentEvent[]) => events.filter((e) => e.id <= before.lastEventId);
      assert.deepEqual(kept(afterRestart.events), before.events, 'every earlier event, as it was');
      assert.ok(before.events.some((e) => e.kind === 'restarted' && e.by === 'agent'));

      assert.ok(await until(() => /reconnected/.test(watch.err()), 30_000), `the watch reconnected:\n${watch.err()}`);
      // Two monitor rounds of the restarted agent, counted by the worker that answered them: a
      // round's events are recorded before the next round of that API starts.
      const [checksThen] = (await json('/sum/checks')) as number[];
      assert.ok(await until(async () => ((await json('/sum/checks')) as number[])[0]! >= checksThen! + 2, 120_000), 'the restarted agent checked the worker twice');
      const { status: later } = await statusJson();
      assert.deepEqual(later.events.filter((e) => e.id > before.lastEventId), [], 'no event after the restart');

      const restarted = await user.plumb(['restart', 'sum']);
      assert.equal(restarted.exitCode, 0, restarted.stderr);
      assert.ok(await until(() => /restarted \(operator\)\s+sum@\d+/.test(watch.out()), 20_000), `the reconnected watch sees plumb restart:\n${watch.out()}`);
    } finally {
      exit = await stopWatch(watch);
    }
    assert.equal(exit, 0, watch.err());
  });

  // What takes long here is waiting (the agent's checks every MONITOR_INTERVAL_MS, restarts, its
  // look at certificates every HEARTBEAT_INTERVAL_MS, a unit queued behind a slow one), not work:
  // these wait side by side, each on an API (or a certificate) of its own. The busy worker stays
  // out: beside them, on a loaded machine, its R got too little CPU per check to count as busy.
  describe('long waits, side by side', { concurrency: true }, () => {
    test(`a worker that hangs again after each restart: the agent restarts it ${MONITOR_MAX_RESTARTS} times, then leaves it and says so; the webhook gets "repeated restarts" and status shows it`, async () => {
      // While a flag file exists, R answers its first health check and hangs in the next: each new
      // R process starts well (however slowly, on a busy machine), then stops answering.
      const stuck = `
answered <- 0
#* @get /
function() {
  answered <<- answered + 1
  if (answered > 1 && file.exists("/var/plumber/stuck/data/hang")) Sys.sleep(1e6)
  "ok"
}
`;
      const me = await userCopy(user);
      const deployed = await me.plumb(['deploy', await apiDir({ 'plumber.R': stuck }), '--name', 'stuck']);
      assert.equal(deployed.exitCode, 0, deployed.stderr);
      const seen = await me.plumb(['status']);
      assert.equal(seen.exitCode, 0, seen.stderr);
      try {
        await onDroplet(['touch', '/var/plumber/stuck/data/hang']);
        const repeated = () => hook.got.find((p) => p.alert === 'repeated-restarts' && p.event?.api === 'stuck');
        assert.ok(await until(() => repeated() !== undefined, 300_000), `the webhook got repeated-restarts: ${JSON.stringify(hook.got)}`);
        assert.match(repeated()?.text ?? '', new RegExp(`stuck \\(worker \\d+\\) keeps restarting \\(${ALERT_RESTARTS} or more times within 10 min\\); the latest: restarted by plumb-agent after ${MONITOR_FAILURES_BEFORE_RESTART} failed checks`));

        // What the user reads in `plumb status`, look after look, until the agent gives up.
        let read = '';
        const gaveUp = new RegExp(`health-failed\\s+stuck@\\d+\\s+still failing after ${MONITOR_MAX_RESTARTS} restarts by the agent within 10 min; not restarting it again`);
        assert.ok(await until(async () => gaveUp.test((read += (await me.plumb(['status'])).stdout)), 120_000), `status said the agent gave up:\n${read}`);
        const { status } = await statusJson(me);
        const kinds = status.events.filter((e) => e.api === 'stuck').map((e) => (e.by ? `${e.kind}:${e.by}` : e.kind));
        assert.equal(kinds.filter((k) => k === 'restarted:agent').length, MONITOR_MAX_RESTARTS, kinds.join(' '));
        assert.equal(kinds.at(-1), 'health-failed', 'nothing after giving up');
        assert.equal(hook.got.filter((p) => p.alert === 'repeated-restarts' && p.event?.api === 'stuck').length, 1, 'one alert, not one per restart');
      } finally {
        await me.plumb(['remove', 'stuck', '--yes']);
      }
    });

    test('a worker killed right after its first deploy, before the agent has looked at it, is reported down and restarted by systemd', async () => {
      const me = await userCopy(user);
      const deployed = await me.plumb(['deploy', await apiDir(sumApi('e1')), '--name', 'early']);
      assert.equal(deployed.exitCode, 0, deployed.stderr);
      try {
        // At once: the agent's first look at a new API comes up to MONITOR_INTERVAL_MS after it is live.
        const [pid] = (await json('/early/pid')) as number[];
        await onDroplet(['kill', '-9', String(pid)]);
        const kinds = async () => (await statusJson(me)).status.events.filter((e) => e.api === 'early').map((e) => (e.by ? `${e.kind}:${e.by}` : e.kind));
        let seen: string[] = [];
        const said = await until(async () => (seen = await kinds()).includes('restarted:systemd') && seen.includes('down'), 30_000);
        assert.ok(said, `down and restarted (systemd) in plumb status: ${seen.join(' ')}`);
        assert.ok(await until(async () => JSON.stringify(await json('/early/pid').catch(() => null)) === JSON.stringify([pid]) ? false : (await json('/early/pid').catch(() => null)) !== null, 30_000), 'a new R process serves');
      } finally {
        await me.plumb(['remove', 'early', '--yes']);
      }
    });

    test(`a certificate that expires in under ${ALERT_CERTIFICATE_DAYS} days: the webhook gets "certificate about to expire", and plumb status shows it`, async () => {
      const me = await userCopy(user);
      const dir = '/etc/letsencrypt/live/soon.example';
      await onDroplet(['mkdir', '-p', dir]);
      try {
        // A real certificate, made short-lived: the agent's own look at /etc/letsencrypt finds it.
        await onDroplet(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${dir}/privkey.pem`, '-out', `${dir}/cert.pem`, '-days', '5', '-subj', '/CN=soon.example', '-addext', 'subjectAltName=DNS:soon.example']);
        const alert = () => hook.got.find((p) => p.alert === 'certificate-expiring');
        assert.ok(await until(() => alert() !== undefined, 180_000), `the webhook got certificate-expiring: ${JSON.stringify(hook.got)}`);
        assert.match(alert()?.text ?? '', /has a certificate about to expire: soon\.example: expires \S+ \([45] days left; soon\.example\)/);
        const shown = await me.plumb(['status']);
        assert.equal(shown.exitCode, 0, shown.stderr);
        assert.match(shown.stdout, /^\s+https soon\.example: certificate soon\.example expires \d{4}-\d\d-\d\d \([45] days left\)$/m);
        assert.match(shown.stdout, /certificate-expiring\s.*soon\.example: expires/);
      } finally {
        await onDroplet(['rm', '-rf', dir]);
      }
    });

    test('a worker whose start waits in systemd\'s queue (behind a slow unit) is not taken for one that exited: the deploy waits and goes live', async () => {
      // The worker's start job is ordered after a oneshot that takes a while, as on a droplet whose
      // systemd is busy; the unit stays inactive, with its job queued, until it runs.
      await onDroplet(['sh', '-c', [
        'printf "[Service]\\nType=oneshot\\nExecStart=/bin/sleep 20\\n" > /etc/systemd/system/plumb-test-slow.service',
        'mkdir -p /etc/systemd/system/plumber-queued@.service.d',
        'printf "[Unit]\\nAfter=plumb-test-slow.service\\n" > /etc/systemd/system/plumber-queued@.service.d/after-slow.conf',
        'systemctl daemon-reload',
      ].join(' && ')]);
      try {
        await onDroplet(['systemctl', 'start', '--no-block', 'plumb-test-slow.service']);
        const deployed = await user.plumb(['deploy', await apiDir(sumApi('q1')), '--name', 'queued', '--health-timeout', '60']);
        assert.equal(deployed.exitCode, 0, deployed.stderr);
        assert.deepEqual(await json('/queued/version'), ['q1']);
      } finally {
        await user.plumb(['remove', 'queued', '--yes']);
        await onDroplet(['sh', '-c', 'rm -rf /etc/systemd/system/plumb-test-slow.service /etc/systemd/system/plumber-queued@.service.d && systemctl daemon-reload']);
      }
    });
  });

  test('alerts --off: the droplet forgets the webhook', async () => {
    const result = await user.plumb(['alerts', '--off']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stdout, /alerts from health are off \(they went to http:\/\/10\.213\.0\.1:\d+\/hook\)/);
    const state = JSON.parse(await onDroplet(['cat', '/var/lib/plumb/state.json'])) as { alertWebhook: string | null };
    assert.equal(state.alertWebhook, null);
  });
});

describe('which droplet', () => {
  /** A second user config on this machine: the droplet this file provisioned, and `other`, never enrolled. */
  async function twoDroplets(): Promise<Record<string, string>> {
    const copy = await userCopy(user);
    const file = path.join(copy.configHome, 'plumb', 'droplets.json');
    const known = JSON.parse(await readFile(file, 'utf8')) as { droplets: Array<Record<string, unknown>> };
    const [mine] = known.droplets;
    known.droplets.push({ ...mine, name: 'other', id: Number(mine?.id) + 1, fingerprint: null });
    await writeFile(file, JSON.stringify(known), { mode: 0o600 });
    return copy.env;
  }

  test('with two droplets and no --droplet: off a terminal, exit 2 and one line naming both and --droplet; on a terminal, plumb asks and acts on the one picked', async () => {
    const env = await twoDroplets();
    const piped = await execa(process.execPath, [PLUMB_CLI, 'releases', 'sum'], { env, stdin: 'ignore', reject: false });
    assert.equal(piped.exitCode, 2, piped.stderr);
    assert.match(piped.stderr, /^plumb: plumb knows 2 droplets \(health, other\) and no --droplet was given\n\s+say which with --droplet NAME/);
    assert.equal(piped.stdout, '');

    // `script` gives plumb a terminal (a pty), as a person at one would have; the answer is typed in.
    const onTerminal = (answer: string) => execa('script', ['-qec', `${process.execPath} ${PLUMB_CLI} releases sum`, '/dev/null'], { env, input: `${answer}\n`, reject: false });
    const first = await onTerminal('1');
    assert.match(first.stdout, /plumb knows 2 droplets:\s+1\) health\s+2\) other\s+Which one \(number or name\)\?/);
    assert.equal(first.exitCode, 0, first.stdout);
    assert.match(first.stdout, /^\* \S+\s/m, 'the live release of sum, on health');
    const second = await onTerminal('other');
    assert.equal(second.exitCode, 1, second.stdout);
    assert.match(second.stdout, /plumb: droplet other was never enrolled/, 'the command went to the droplet picked');
    const wrong = await onTerminal('7');
    assert.equal(wrong.exitCode, 2, wrong.stdout);
    assert.match(wrong.stdout, /plumb: "7" is none of the droplets listed/);
  });
});
