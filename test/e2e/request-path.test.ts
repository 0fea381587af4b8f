import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import { pollUntil, type AgentEvent, type StatusResult } from '@plumb/shared';
import type { Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { clientFor, httpGet, waitAction, type HttpAnswer } from './helpers.js';
import { startLoad, type LoadReport } from './load.js';
import { execa } from 'execa';
import { PLUMB_CLI, sharedDroplet, type PlumbUser } from './plumb.js';

/**
 * The request path (issue 11): switches (deploy, rollback, scale, restart) lose no request and
 * close no client connection, keep-alive clients included, because they change the API's
 * nftables map and never reload nginx; old workers drain by their open connections, up to the
 * API's --drain-timeout; plumber's redirects stay under the API's prefix.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;
/** What the droplet answered at / right after `plumb provision`, before any deploy. */
let freshRoot: HttpAnswer;
/** The agent's journal then. */
let freshJournal: string;

/** A long request, redirects of the API's own (one that knows its prefix), and plumber's trailing-slash redirect. */
const EXTRA = `
#* Takes s seconds
#* @get /slow
function(s = 20) {
  Sys.sleep(as.numeric(s))
  "slept"
}

#* @get /go
function(res) {
  res$status <- 302
  res$setHeader("Location", "/version")
  ""
}

#* @get /own
function(res) {
  res$status <- 302
  res$setHeader("Location", "/sum/version")
  ""
}

#* @get /dir/
function() "dir"

#* An absolute redirect on this host, as an API that builds URLs from the Host header would
#* @get /self
function(req, res, rest = "") {
  res$status <- 302
  res$setHeader("Location", paste0("http://", req$HTTP_HOST, "/sum", rest))
  ""
}

options_plumber(trailingSlash = TRUE)
`;

const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
const get = (path: string, timeoutMs = 5000) => httpGet(`http://${address}${path}`, timeoutMs);

async function deploy(version: string, ...flags: string[]) {
  const result = await user.plumb(['deploy', await apiDir(sumApi(version, EXTRA)), '--name', 'sum', ...flags]);
  assert.equal(result.exitCode, 0, result.stderr);
  return result;
}

async function plumbOk(...args: string[]) {
  const result = await user.plumb(args);
  assert.equal(result.exitCode, 0, `plumb ${args.join(' ')}:\n${result.stderr}`);
  return result;
}

async function statusJson(): Promise<StatusResult> {
  const [droplet] = JSON.parse((await plumbOk('status', '--json')).stdout) as Array<{ status: StatusResult }>;
  assert.ok(droplet);
  return droplet.status;
}

interface SlowAnswer {
  status: number;
  body: string;
  error: string;
  /** When the client had the answer (or the error). */
  at: number;
}

/**
 * `plumb deploy` with a 20 s request sent to the live release while the new one starts (when the
 * deploy says it waits for the API to answer), so the request is in flight at the switch however
 * long the deploy took to get there.
 */
async function deployAcrossSlowRequest(version: string, ...flags: string[]) {
  const child = execa(process.execPath, [PLUMB_CLI, 'deploy', await apiDir(sumApi(version, EXTRA)), '--name', 'sum', ...flags], { env: user.env, reject: false, stdin: 'ignore', timeout: 300_000 });
  let stderr = '';
  let slow: Promise<SlowAnswer> | undefined;
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (slow || !stderr.includes('waiting for the API to answer')) return;
    slow = get('/sum/slow?s=20', 60_000).then(
      (a: HttpAnswer) => ({ status: a.status, body: a.body, error: '', at: Date.now() }),
      (err: Error) => ({ status: 0, body: '', error: err.message, at: Date.now() }),
    );
  });
  const result = await child;
  assert.equal(result.exitCode, 0, String(result.stderr));
  assert.ok(slow, `the deploy said it was waiting for the API:\n${stderr}`);
  return { stdout: String(result.stdout), answeredAt: Date.now(), slow };
}

/** nginx's worker processes: a reload replaces them all. */
const nginxWorkers = () => onDroplet(['sh', '-c', 'm=$(cat /run/nginx.pid); cat /proc/$m/task/$m/children']);

sharedDroplet(
  'reqpath',
  async (shared) => {
    ({ lab, user, id: dropletId, address } = shared);
    freshRoot = await get('/');
    freshJournal = await onDroplet(['journalctl', '-u', 'plumb-agent', '-o', 'cat', '--no-pager']);
    await deploy('v0');
  },
);

describe('switches without a reload', () => {
  test('keep-alive and fresh-connection clients during 10 redeploys, a rollback, a scale 1->2->1 and a restart: 0 failed requests, 0 connection errors, no connection closed, nginx never reloaded', async () => {
    const workersBefore = await nginxWorkers();
    const keepAlive = startLoad(`http://${address}/sum/version`, { rps: 100, concurrency: 8, keepAlive: true, maxMs: 600_000 });
    const fresh = startLoad(`http://${address}/sum/version`, { rps: 50, concurrency: 4, maxMs: 600_000 });
    let reports: LoadReport[] = [];
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 1; i <= 10; i++) await deploy(`v${i}`);
      await plumbOk('rollback', 'sum');
      await plumbOk('scale', 'sum', '2');
      await plumbOk('scale', 'sum', '1');
      await plumbOk('restart', 'sum');
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      reports = [await keepAlive.stop(), await fresh.stop()];
    }
    const [kept, opened] = reports as [LoadReport, LoadReport];
    assert.ok(kept.ok > 1000 && opened.ok > 500, `the load ran (${kept.ok} kept-alive, ${opened.ok} fresh)`);
    assert.equal(kept.failed, 0, kept.failures.join('\n'));
    assert.equal(kept.connectionErrors, 0, kept.failures.join('\n'));
    assert.equal(opened.failed, 0, opened.failures.join('\n'));
    assert.equal(opened.connectionErrors, 0, opened.failures.join('\n'));
    // No connection ends: a reload would close all 8 each time, and nginx keeps one for NGINX_KEEPALIVE_REQUESTS (100,000).
    assert.deepEqual({ connections: kept.connections, closes: kept.closes }, { connections: 8, closes: [] }, `for ${kept.ok} kept-alive requests`);
    assert.equal(await nginxWorkers(), workersBefore, 'the same nginx worker processes: no reload');
    assert.deepEqual(JSON.parse((await get('/sum/version')).body), ['v9']);
  });
});

describe('drain', () => {
  test('a 20 s request in flight across a redeploy completes with its answer; the deploy returns at once and status shows the old worker draining until then', async () => {
    const [old] = (await statusJson()).apis[0]?.workers ?? [];
    const oldPort = old?.port;
    const { answeredAt, slow } = await deployAcrossSlowRequest('long');
    const during = (await statusJson()).apis[0];
    assert.deepEqual(during?.draining.map((w) => w.port), [oldPort], JSON.stringify(during));
    const answer = await slow;
    assert.deepEqual({ status: answer.status, body: answer.body, error: answer.error }, { status: 200, body: '["slept"]', error: '' });
    assert.ok(answeredAt < answer.at, 'the deploy answered before the request finished');
    let after: typeof during | undefined = during;
    for (let i = 0; i < 20 && (after?.draining.length ?? 0) > 0; i++) {
      await new Promise((r) => setTimeout(r, 250));
      after = (await statusJson()).apis[0];
    }
    assert.deepEqual(after?.draining, [], 'the old worker stopped once its request had finished');
    // Its process is gone. (Its port is free again: the API's next warm spare, decided once the
    // drain is over, may well start on it, so the unit on that port says nothing.)
    assert.ok(old?.pid, 'the old worker had a process');
    assert.equal(await onDroplet(['sh', '-c', `test -e /proc/${old.pid} && echo running || echo gone`]), 'gone');
  });

  test('with --drain-timeout 5 a 20 s request is cut after 5 s, --wait returns once the old worker stopped, and the event log says so', async () => {
    const before = await statusJson();
    const { stdout, answeredAt, slow } = await deployAcrossSlowRequest('cut', '--drain-timeout', '5', '--wait');
    const answer = await slow;
    assert.match(stdout, /stopped at the 5 s drain timeout with 1 connection still open/);
    assert.ok(answer.status === 502 || answer.error !== '', `the client saw the request cut: ${JSON.stringify(answer)}`);
    assert.ok(answer.at <= answeredAt + 1000, 'cut, not retried elsewhere: the client knew when --wait returned');
    const cut = (await statusJson()).events.filter((e: AgentEvent) => e.id > before.lastEventId && e.kind === 'drain-cut');
    assert.equal(cut.length, 1, JSON.stringify(cut));
    assert.match(cut[0]?.detail ?? '', /1 connection still open \(requests cut\) at the end of its 5 s drain/);
    assert.equal(cut[0]?.api, 'sum');
    const state = JSON.parse(await onDroplet(['cat', '/var/lib/plumb/state.json'])) as { apis: Record<string, { drainTimeoutMs: number; draining: unknown[] }> };
    assert.equal(state.apis['sum']?.drainTimeoutMs, 5000, 'kept for the API');
    assert.deepEqual(state.apis['sum']?.draining, []);
  });
});

describe('a fresh droplet, keep-alive and shutdown', () => {
  test("a droplet fresh from provision, with no API yet, answers / with plumb's 404, not nginx's welcome page: rendered as nginx first started, not on a later monitor tick", () => {
    assert.deepEqual(freshRoot, { status: 404, body: 'plumb: no API is served at /. Deployed APIs are under their own paths.\n' });
    const rendered = freshJournal.split('\n').filter((l) => l.includes("plumb's nginx config"));
    assert.equal(rendered.length, 1, freshJournal);
    assert.match(rendered[0] ?? '', /rendered at once.*"by":"nginx-started"/);
  });

  test('one keep-alive client connection carries 1,100 requests: nginx does not close it after its default 1000', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    try {
      for (let i = 0; i < 1100; i++) {
        const status = await new Promise<number>((resolve, reject) => {
          const req = http.get(`http://${address}/`, { agent, timeout: 5000 }, (res) => res.resume().on('end', () => resolve(res.statusCode ?? 0)));
          req.on('socket', (socket) => sockets.add(socket));
          req.on('error', reject);
        });
        assert.equal(status, 404, `request ${i + 1}`);
      }
    } finally {
      agent.destroy();
    }
    assert.equal(sockets.size, 1, `${sockets.size} connections for 1,100 requests`);
  });

  test("at shutdown systemd stops nginx before the API's workers (ordered, not in parallel): no 502 while a droplet goes down", async () => {
    const workers = (await onDroplet(['systemctl', 'list-units', '--plain', '--no-legend', 'plumber-sum@*'])).split('\n').map((l) => l.split(/\s+/)[0] ?? '').filter(Boolean);
    assert.ok(workers.length > 0, 'a worker runs');
    const cursor = /-- cursor: (.*)/.exec(await onDroplet(['journalctl', '-n', '0', '--show-cursor']))?.[1] ?? '';
    // One transaction stopping both, as a shutdown makes.
    await onDroplet(['systemctl', 'stop', 'nginx.service', ...workers]);
    await onDroplet(['systemctl', 'start', 'nginx.service', ...workers]);
    const lines = (await onDroplet(['journalctl', '--after-cursor', cursor, '-o', 'cat', '--no-pager'])).split('\n');
    const nginxStopped = lines.findIndex((l) => l.startsWith('Stopped nginx.service'));
    const workerStopping = lines.findIndex((l) => l.startsWith('Stopping plumber-sum@'));
    assert.ok(nginxStopped >= 0 && workerStopping >= 0, lines.join('\n'));
    assert.ok(nginxStopped < workerStopping, `nginx had stopped before a worker began to:\n${lines.join('\n')}`);
    // R takes a few seconds to listen again after the start.
    const deadline = Date.now() + 60_000;
    let status = 0;
    while (status !== 200 && Date.now() < deadline) {
      status = (await get('/sum/version').catch(() => undefined))?.status ?? 0;
      if (status !== 200) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(status, 200, 'serving again');
  });
});

describe('status --watch --json', () => {
  test('prints one JSON object per line (heartbeats, then the restart plumb restart makes), and ends cleanly on Ctrl-C (SIGINT) with exit 0', async () => {
    const child = execa(process.execPath, [PLUMB_CLI, 'status', '--watch', '--json'], { env: user.env, reject: false, stdin: 'ignore', timeout: 300_000 });
    let stdout = '';
    const seen = (match: (item: Record<string, unknown>) => boolean) =>
      new Promise<void>((resolve) => {
        const look = () => {
          const items = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
          if (!items.some(match)) return;
          child.stdout?.off('data', look);
          resolve();
        };
        child.stdout?.on('data', look);
      });
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    await seen((item) => 'heartbeat' in item);
    const restarted = seen((item) => (item['event'] as AgentEvent | undefined)?.kind === 'restarted');
    await plumbOk('restart', 'sum');
    await restarted;
    child.kill('SIGINT');
    const result = await child;
    assert.equal(result.exitCode, 0, String(result.stderr));
    assert.ok(stdout.endsWith('\n'), 'the last line is whole');
    const lines = stdout.trimEnd().split('\n');
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not JSON: ${line}`);
    const events = lines.map((l) => JSON.parse(l) as { droplet?: string; event?: AgentEvent }).filter((i) => i.event);
    assert.ok(events.every((i) => i.droplet === 'reqpath'), JSON.stringify(events));
    assert.ok(events.some((i) => i.event?.kind === 'restarted' && i.event.api === 'sum'), JSON.stringify(events));
  });
});

describe('redirects', () => {
  test("a redirect issued by plumber (trailing slash, the API's own Location: /x) stays under /sum/; one already under /sum/ is left as it is", async () => {
    const own = await get('/sum/go');
    assert.equal(own.status, 302);
    const location = (path: string) =>
      new Promise<string | undefined>((resolve, reject) => {
        http.get(`http://${address}${path}`, { agent: false, timeout: 5000 }, (res) => resolve((res.resume(), res.headers.location))).on('error', reject);
      });
    assert.equal(await location('/sum/go'), '/sum/version');
    assert.equal(await location('/sum/own'), '/sum/version', 'not /sum/sum/version');
    assert.equal(await location('/sum/dir'), '/sum/dir/');
    assert.equal(await location('/sum/__swagger__/'), '../__docs__/');
    // http://HOST/sum itself (nothing after the name, or a query) is the API's own path: kept.
    assert.equal(await location('/sum/self'), '/sum');
    assert.equal(await location('/sum/self?rest=%3Fa%3D1'), '/sum?a=1');
    assert.equal(await location('/sum/self?rest=%2Fversion'), '/sum/version');
    // http://HOST/sumfoo is the root's /sumfoo as plumber sees it: under the prefix.
    assert.equal(await location('/sum/self?rest=foo'), '/sum/sumfoo');
    assert.deepEqual(JSON.parse((await get('/sum/dir/')).body), ['dir']);
  });
});

describe('the nftables table outlives a reboot and a flush', () => {
  test('after a reboot the first answer nginx gives is the API\'s, not a 502: the saved table is loaded before the worker starts, and the worker waited for before nginx starts', async () => {
    const serving = (await get('/sum/version')).body;
    const asked = clientFor(lab).droplet.rebootDroplet({ droplet_id: dropletId });
    // Answers from before the reboot do not count: the first one after the droplet stopped answering does.
    let wentDown = false;
    let first: HttpAnswer | undefined;
    const deadline = Date.now() + 240_000;
    while (!first && Date.now() < deadline) {
      const answer = await get('/sum/version', 1000).catch(() => undefined);
      if (!answer) wentDown = true;
      else if (wentDown) first = answer;
      if (!first) await new Promise((r) => setTimeout(r, 50));
    }
    const { action } = (await asked).data;
    assert.equal(await waitAction(clientFor(lab), action.id), 'completed');
    assert.ok(first, 'the API answered again after the reboot');
    assert.deepEqual({ status: first.status, body: first.body }, { status: 200, body: serving }, 'the first answer after the reboot');
    assert.equal(await onDroplet(['systemctl', 'is-active', 'plumb-routing.service']), 'active');
    // The APIs were kept apart from their first moment: the saved table was loaded before the worker started.
    // The worker is the unit started at boot: the API's warm spare (plumber-sum@PORT too), which the
    // agent starts again once the worker answers, is not.
    const worker = (await onDroplet(['sh', '-c', "ls /etc/systemd/system/multi-user.target.wants | grep '^plumber-sum@'"])).trim();
    assert.match(worker, /^plumber-sum@\d+\.service$/);
    assert.match(await onDroplet(['systemctl', 'show', '-P', 'After', worker]), /\bplumb-isolation\.service\b/);
    const at = async (unit: string, property: string) => Number(await onDroplet(['systemctl', 'show', '-P', property, unit]));
    const loaded = await at('plumb-isolation.service', 'ActiveEnterTimestampMonotonic');
    assert.ok(loaded > 0 && loaded <= (await at(worker, 'ExecMainStartTimestampMonotonic')), 'the table was loaded before R started');
  });

  test("after `nft flush ruleset` the agent notices and puts its table and ufw's rules back by itself, with an event each; a deploy meanwhile does not wait for ufw's reload", async () => {
    const before = await statusJson();
    const serving = (await get('/sum/version')).body;
    // ufw's reload takes seconds under load (14 s seen); this one is held until the gate goes, so a
    // deploy's switch is seen not to wait for it. The agent finds `ufw` on its PATH in /usr/local/sbin first.
    const gate = '/run/plumb-test-ufw-gate';
    const entered = '/run/plumb-test-ufw-entered';
    const wrapper = `#!/bin/sh\nif [ "$1" = reload ] && [ -e ${gate} ]; then : > ${entered}; i=0; while [ -e ${gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; rm -f ${entered}; fi\nexec /usr/sbin/ufw "$@"\n`;
    await onDroplet(['sh', '-c', `printf '%s' '${wrapper}' > /usr/local/sbin/ufw && chmod 755 /usr/local/sbin/ufw && : > ${gate}`]);
    const exists = async (file: string) => (await onDroplet(['sh', '-c', `test -e ${file} && echo yes || echo no`])).trim() === 'yes';
    try {
      await onDroplet(['nft', 'flush', 'ruleset']);
      // The agent looks every MONITOR_INTERVAL_MS; a minute allows for a busy machine.
      const answer = await pollUntil(async () => {
        const got = await get('/sum/version').catch(() => undefined);
        return got?.status === 200 && (await exists(entered)) ? got : undefined;
      }, { timeoutMs: 60_000, intervalMs: 250 });
      assert.deepEqual(answer && { status: answer.status, body: answer.body }, { status: 200, body: serving });
      assert.ok(await exists(entered), "the agent's ufw reload began");
      const restored = (await statusJson()).events.filter((e: AgentEvent) => e.id > before.lastEventId && e.kind === 'routing-restored');
      assert.equal(restored.length, 1, JSON.stringify(restored));
      assert.match(await onDroplet(['nft', 'list', 'table', 'ip', 'plumb']), /dnat to 127\.0\.0\.1/);

      await deploy('during-reload');
      assert.deepEqual(JSON.parse((await get('/sum/version')).body), ['during-reload']);
      assert.ok(await exists(entered), 'the deploy finished while ufw was still reloading');
      assert.ok(!(await statusJson()).events.some((e: AgentEvent) => e.id > before.lastEventId && e.kind === 'firewall-restored'), 'ufw not yet back when the deploy finished');
    } finally {
      await onDroplet(['rm', '-f', gate, entered, '/usr/local/sbin/ufw']);
    }
    // ufw's chains went with the flush (every port open); once its reload ends they are back.
    let firewall: AgentEvent[] = [];
    const firewallDeadline = Date.now() + 60_000;
    while (firewall.length === 0 && Date.now() < firewallDeadline) {
      await new Promise((r) => setTimeout(r, 1000));
      firewall = (await statusJson()).events.filter((e: AgentEvent) => e.id > before.lastEventId && e.kind === 'firewall-restored');
    }
    assert.equal(firewall.length, 1, JSON.stringify(firewall));
    assert.match(await onDroplet(['ufw', 'status']), /^Status: active/);
    assert.match(await onDroplet(['iptables', '-S', 'INPUT']), /^-P INPUT DROP$/m);
  });
});
