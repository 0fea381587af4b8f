import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pollUntil } from '@plumb/shared';
import { execa } from 'execa';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { clientFor, httpGet, waitAction } from './helpers.js';
import { startLoad } from './load.js';
import { PLUMB_CLI, plumbUser, type PlumbUser } from './plumb.js';

/**
 * One API on a group of droplets behind a DigitalOcean Load Balancer (the lab's HAProxy), driven
 * with the real `plumb`: group provision, `lb create`, `--group` on status, releases, scale,
 * restart, logs and remove, a droplet added later that gets the group's APIs from a member,
 * rolling group deploys under load, a deploy that fails on the second droplet and the group
 * rollback (also of a deploy the late joiner got by copy, which then holds the others' rollback
 * mark), a droplet powered off (the balancer takes it out; a group deploy refuses while it cannot
 * be asked, with --skip-unreachable leaves it drifted until it is synced, and a group rollback
 * says it could not be asked), HTTPS on the balancer (`plumb lb https`, `--off`) and what
 * `plumb lb destroy` removes (the stand-in, as DigitalOcean, refuses to delete a certificate for
 * a moment after its balancer let it go). One group for the whole file: two droplets boot at once,
 * a third joins later, so the late joiner is tested without booting a droplet of its own.
 */

const GROUP = 'web';
/** Fast checks so the unhealthy window (interval x threshold = 6 s) fits a test. */
const CHECKS = ['--check-interval', '3', '--check-timeout', '3', '--unhealthy-threshold', '2', '--healthy-threshold', '2'];

interface Member {
  id: number;
  name: string;
  ipv4: string;
}

let lab: Lab;
let user: PlumbUser;
/** Oldest first (the order of a rolling deploy); the third joins in a test. */
let members: Member[];
let balancerIp: string;
/** The group's second release's directory: removed before the late joiner arrives, so its copy can only come from a member. */
let v1Dir: string;
/** What the third droplet served before it was powered off. */
let thirdBeforeOff: string;

interface LbRow {
  ip: string;
  droplets: { id: number; name: string; healthy: boolean | null }[];
}

async function lbState(): Promise<LbRow> {
  const run = await user.plumb(['lb', GROUP, '--json']);
  assert.equal(run.exitCode, 0, run.stderr);
  const [row] = JSON.parse(run.stdout) as LbRow[];
  assert.ok(row, `no balancer for ${GROUP}: ${run.stdout}`);
  return row;
}

/** Polls `plumb lb` until `want` holds for the balancer's view; the view that satisfied it. */
async function untilBalancer(want: (row: LbRow) => boolean, what: string, timeoutMs = 120_000): Promise<LbRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await lbState();
    if (want(row)) return row;
    if (Date.now() > deadline) assert.fail(`the balancer never showed ${what}: ${JSON.stringify(row.droplets)}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Every member, and no other droplet, healthy as the balancer sees it. */
const allHealthy = (row: LbRow) =>
  JSON.stringify(row.droplets.filter((d) => d.healthy === true).map((d) => d.id).sort()) === JSON.stringify(members.map((m) => m.id).sort()) && row.droplets.length === members.length;
/** How long one request to a droplet may take: on a loaded CI machine R answers slowly (what answers is checked, not how fast). */
const ANSWER_MS = 15_000;
const versionOn = async (ipv4: string) => (await httpGet(`http://${ipv4}/sum/version`, ANSWER_MS)).body;

/** The zone the HTTPS tests put on the stand-in's "DigitalOcean DNS", and the name the group answers to. */
const ZONE = 'plumb-lab.test';
const DOMAIN = `api.${ZONE}`;
let labCa: string;

/** A request to the balancer's address as a browser sends one for DOMAIN: SNI and Host, the lab CA trusted. */
function viaBalancer(scheme: 'http' | 'https', urlPath: string): Promise<{ status: number; location: string | undefined; body: string }> {
  const client = scheme === 'https' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.get(
      `${scheme}://${balancerIp}${urlPath}`,
      { agent: false, timeout: ANSWER_MS, headers: { host: DOMAIN }, ...(scheme === 'https' ? { ca: labCa, servername: DOMAIN } : {}) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${scheme} ${urlPath}: no answer within ${ANSWER_MS} ms`)));
    req.on('error', reject);
  });
}

/** The stand-in's DigitalOcean API, as the user's own tools (doctl, the control panel) would use it. */
async function doApi(method: string, apiPath: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${lab.apiUrl}${apiPath}`, { method, headers: { authorization: `Bearer ${lab.token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** What the API is told of the client's scheme (X-Forwarded-Proto as nginx passes it on). */
const PROTO_ENDPOINT = '#* @get /proto\nfunction(req) {\n  if (is.null(req$HTTP_X_FORWARDED_PROTO)) "" else req$HTTP_X_FORWARDED_PROTO\n}\n';
/** The group's API: sumApi with /proto, so any test can ask what scheme it is told. */
const groupApi = (version: string, extra = '') => sumApi(version, PROTO_ENDPOINT + extra);

async function deployGroup(version: string, extra: string[] = []) {
  return user.plumb(['deploy', await apiDir(groupApi(version)), '--name', 'sum', '--group', GROUP, ...extra]);
}

interface GroupStatusJson {
  drifted: string[];
  droplets: { droplet: string; status?: { apis: { name: string; release: string; group: { name: string; generation: number; kind: string; to: string } | null }[] } }[];
  apis: { name: string; source: { droplet: string }; members: { droplet: string; state: string; digest: string | null }[] }[];
}

async function groupStatus(): Promise<{ text: string; json: GroupStatusJson }> {
  const text = await user.plumb(['status', '--group', GROUP]);
  assert.equal(text.exitCode, 0, text.stderr);
  const json = await user.plumb(['status', '--group', GROUP, '--json']);
  assert.equal(json.exitCode, 0, json.stderr);
  return { text: text.stdout, json: JSON.parse(json.stdout) as GroupStatusJson };
}

before(async () => {
  lab = await startLab();
  user = await plumbUser(lab);
  const made = await user.plumb(['provision', '--group', GROUP, '--count', '2', '--json']);
  assert.equal(made.exitCode, 0, made.stderr);
  members = (JSON.parse(made.stdout) as { droplet: Member }[]).map((r) => r.droplet).sort((a, b) => a.id - b.id);
  // Two releases, so the group's last deploy has one to go back to (the late joiner's rollback).
  // Both droplets at once: the second deploy costs the file no more time than one deploy in turn.
  const first = await user.plumb(['deploy', await apiDir(groupApi('v0')), '--name', 'sum', '--group', GROUP, '--parallel', '2']);
  assert.equal(first.exitCode, 0, first.stderr);
  v1Dir = await apiDir(groupApi('v1'));
  const deployed = await user.plumb(['deploy', v1Dir, '--name', 'sum', '--group', GROUP, '--parallel', '2']);
  assert.equal(deployed.exitCode, 0, deployed.stderr);
  const created = await user.plumb(['lb', 'create', GROUP, ...CHECKS, '--json']);
  assert.equal(created.exitCode, 0, created.stderr);
  balancerIp = (JSON.parse(created.stdout) as LbRow).ip;
  await untilBalancer(allHealthy, 'every droplet healthy');
});

after(async () => {
  await lab?.stop();
});

test('provision --group: the droplets carry the group tag, and the group and its balancer are found from DigitalOcean alone', async () => {
  const listed = await user.plumb(['droplets']);
  assert.equal(listed.exitCode, 0, listed.stderr);
  for (const d of members) assert.match(listed.stdout, new RegExp(`^${d.name} .* ${GROUP} `, 'm'));
  const { droplets } = (await clientFor(lab).droplet.listDroplets({ tag_name: `plumb-group:${GROUP}` })).data;
  assert.deepEqual(droplets.map((d) => d.id).sort(), members.map((d) => d.id).sort());
  // Another machine with no local state sees the group and the balancer.
  const stranger = await plumbUser(lab);
  const seen = await stranger.plumb(['droplets']);
  for (const d of members) assert.match(seen.stdout, new RegExp(`^${d.name} .* ${GROUP} .*not this controller`, 'm'));
  const lb = await stranger.plumb(['lb']);
  assert.equal(lb.exitCode, 0, lb.stderr);
  assert.match(lb.stdout, new RegExp(`plumb-${GROUP} \\(group ${GROUP}\\) active at ${balancerIp.replaceAll('.', '\\.')}`));
  for (const d of members) assert.match(lb.stdout, new RegExp(`${d.name} \\(${d.id}\\): healthy`));
});

test('a client that reaches a droplet directly cannot make the API believe it came over https (X-Forwarded-Proto)', async () => {
  for (const m of members) {
    const direct = await fetch(`http://${m.ipv4}/sum/proto`, { headers: { 'x-forwarded-proto': 'https' }, signal: AbortSignal.timeout(ANSWER_MS) });
    assert.equal(await direct.text(), '["http"]', `${m.name} passed a client's X-Forwarded-Proto on`);
  }
});

test('--group on status, releases, scale, restart and logs acts on every droplet of the group', async () => {
  const { text, json } = await groupStatus();
  assert.match(text, new RegExp(`group ${GROUP}: 2 droplets, every one on the group's current release`));
  const [sum] = json.apis;
  assert.equal(sum?.name, 'sum');
  assert.deepEqual(sum.members.map((m) => m.state), ['current', 'current']);
  assert.equal(new Set(sum.members.map((m) => m.digest)).size, 1, 'the same code has the same content digest on both droplets');

  const releases = await user.plumb(['releases', 'sum', '--group', GROUP]);
  assert.equal(releases.exitCode, 0, releases.stderr);
  // Each droplet's releases under its name (two: the group's first and second deploy), the live one starred.
  for (const m of members) assert.match(releases.stdout, new RegExp(`^${m.name}:\\n(?: {4}\\S+ .*\\n)*  \\* \\S+ .* content ${sum.members[0]?.digest?.slice(0, 12)}`, 'm'));

  const scaled = await user.plumb(['scale', 'sum', '2', '--group', GROUP]);
  assert.equal(scaled.exitCode, 0, scaled.stderr);
  for (const m of members) assert.match(scaled.stdout, new RegExp(`^${m.name}:\\s+sum: 1 -> 2 workers`, 'm'));
  const pids = async (ipv4: string) => {
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) seen.add((await httpGet(`http://${ipv4}/sum/pid`, ANSWER_MS)).body);
    return seen;
  };
  for (const m of members) assert.equal((await pids(m.ipv4)).size, 2, `two workers answer on ${m.name}`);

  // Following the group's log while each droplet writes a line: both lines arrive, each with its droplet.
  const follow = execa(process.execPath, [PLUMB_CLI, 'logs', 'sum', '--group', GROUP, '-f', '-n', '0'], { env: user.env, reject: false, stdin: 'ignore' });
  let out = '';
  follow.stdout?.on('data', (chunk: Buffer) => (out += String(chunk)));
  const wanted = members.map((m) => new RegExp(`^${m.name}  \\S+ plumber-sum@\\d+  shout: from-${m.name}$`, 'm'));
  await pollUntil(
    async () => {
      if (wanted.every((w) => w.test(out))) return true;
      for (const m of members) await httpGet(`http://${m.ipv4}/sum/shout?msg=from-${m.name}`);
      return undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
  follow.kill('SIGINT');
  await follow;
  for (const w of wanted) assert.match(out, w);

  const restarted = await user.plumb(['restart', 'sum', '--group', GROUP]);
  assert.equal(restarted.exitCode, 0, restarted.stderr);
  for (const m of members) assert.match(restarted.stdout, new RegExp(`^${m.name}:\\s+restarted sum \\(2 workers\\)`, 'm'));
  // The last lines of each droplet, merged by time: both droplets' lines, in time order.
  const recent = await user.plumb(['logs', 'sum', '--group', GROUP, '-n', '20']);
  assert.equal(recent.exitCode, 0, recent.stderr);
  for (const m of members) assert.match(recent.stdout, new RegExp(`^${m.name}  \\d{4}-\\d\\d-\\d\\dT\\S+Z `, 'm'));
  const times = recent.stdout.trim().split('\n').map((l) => l.split('  ')[1]?.split(' ')[0] ?? '');
  assert.deepEqual(times, [...times].sort(), 'merged by time');

  const both = await user.plumb(['status', '--group', GROUP, '--droplet', members[0]!.name]);
  assert.equal(both.exitCode, 2, 'a group and one droplet at once is a usage error');
});

test("a droplet added to the group later gets the group's APIs from a member and the balancer counts it healthy", async () => {
  // The laptop no longer has the API's directory: the release can only come from a member.
  await rm(v1Dir, { recursive: true });
  const added = await user.plumb(['provision', '--group', GROUP, '--json']);
  assert.equal(added.exitCode, 0, added.stderr);
  const [row] = JSON.parse(added.stdout) as { droplet: Member; synced?: { ok: boolean; apis: { name: string; droplets: { droplet: string; outcome: string }[] }[] } }[];
  assert.ok(row);
  const third = row.droplet;
  assert.equal(row.synced?.ok, true, added.stdout);
  assert.deepEqual(row.synced.apis.map((a) => [a.name, a.droplets.map((d) => [d.droplet, d.outcome])]), [['sum', [[third.name, 'updated']]]]);
  // The group's settings came with it: two workers, as `scale --group` left the others.
  assert.equal(await versionOn(third.ipv4), '["v1"]');
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) seen.add((await httpGet(`http://${third.ipv4}/sum/pid`, ANSWER_MS)).body);
  assert.equal(seen.size, 2);
  members = [...members, third];
  await untilBalancer(allHealthy, `${third.name} healthy with the others`);
  assert.deepEqual((await groupStatus()).json.drifted, []);
});

test('rollback --group after a late joiner: the others go back to their release before, and the joiner, which had none, gets that release from one of them', async () => {
  const [first, second, third] = members;
  assert.ok(first && second && third);
  const rolled = await user.plumb(['rollback', 'sum', '--group', GROUP]);
  assert.equal(rolled.exitCode, 0, `${rolled.stderr}\n${rolled.stdout}`);
  assert.match(rolled.stdout, new RegExp(`^rolled back sum on every droplet of group ${GROUP} \\(3\\)`, 'm'));
  for (const m of [first, second]) assert.match(rolled.stdout, new RegExp(`^  ${m.name}: \\S+ -> \\S+$`, 'm'));
  assert.match(rolled.stdout, new RegExp(`^  ${third.name}: \\S+ -> \\S+ \\(it had no release before that deploy: copied from (${first.name}|${second.name})\\)$`, 'm'));
  assert.deepEqual([await versionOn(first.ipv4), await versionOn(second.ipv4), await versionOn(third.ipv4)], ['["v0"]', '["v0"]', '["v0"]']);
  const { json } = await groupStatus();
  assert.deepEqual(json.drifted, [], 'one release everywhere');
  // The copy carries the others' rollback mark: the joiner reads as rolled back, not as still holding that deploy.
  const marks = json.droplets.map((d) => d.status?.apis.find((a) => a.name === 'sum')?.group);
  assert.deepEqual(marks.map((m) => [m?.name, m?.kind]), [[GROUP, 'rollback'], [GROUP, 'rollback'], [GROUP, 'rollback']], JSON.stringify(marks));
  assert.equal(new Set(marks.map((m) => m?.generation)).size, 1, 'one generation on every droplet');
  await untilBalancer(allHealthy, 'every droplet healthy after the rollback');
});

test('each droplet answers /__plumb/health on port 80 with every API it serves', async () => {
  for (const d of members) {
    const health = await httpGet(`http://${d.ipv4}/__plumb/health`);
    assert.equal(health.status, 200, health.body);
    assert.deepEqual((JSON.parse(health.body) as { apis: { name: string; healthy: boolean }[] }).apis.map((a) => [a.name, a.healthy]), [['sum', true]]);
  }
  // One API down on one droplet: that droplet's health says so, and the balancer takes it out.
  const [, , third] = members;
  assert.ok(third);
  await lab.droplet(third.id).exec(['sh', '-c', 'systemctl stop "plumber-sum@*"']);
  const down = await httpGet(`http://${third.ipv4}/__plumb/health`);
  assert.equal(down.status, 503, down.body);
  await untilBalancer((row) => row.droplets.find((d) => d.id === third.id)?.healthy === false, `${third.name} unhealthy`);
  const restarted = await user.plumb(['restart', 'sum', '--droplet', third.name]);
  assert.equal(restarted.exitCode, 0, restarted.stderr);
  await untilBalancer(allHealthy, 'every droplet healthy again');
});

test('lb https: bad input and a domain not on DigitalOcean DNS change nothing; then the balancer terminates TLS for the domain and redirects http', async () => {
  labCa = await lab.certificates.caPem();
  const rulesNow = async () => ((await doApi('GET', '/load_balancers')).json.load_balancers as { forwarding_rules: unknown[]; redirect_http_to_https: boolean }[])[0];
  const before = await rulesNow();
  const noDomain = await user.plumb(['lb', 'https', GROUP]);
  assert.equal(noDomain.exitCode, 2, noDomain.stderr);
  assert.match(noDomain.stderr, /^plumb: plumb lb https needs --domain D/);
  const badDomain = await user.plumb(['lb', 'https', GROUP, '--domain', 'https://api.example.com']);
  assert.equal(badDomain.exitCode, 2, badDomain.stderr);
  const elsewhere = await user.plumb(['lb', 'https', GROUP, '--domain', DOMAIN]);
  assert.equal(elsewhere.exitCode, 1, elsewhere.stderr);
  assert.match(elsewhere.stderr, new RegExp(`^plumb: ${DOMAIN.replaceAll('.', '\\.')} is not on DigitalOcean DNS.*\\n.*doctl compute domain create ${ZONE.replaceAll('.', '\\.')}`));
  assert.deepEqual((await doApi('GET', '/certificates')).json.certificates, [], 'no certificate was asked for');
  assert.deepEqual(await rulesNow(), before, 'the balancer is unchanged');

  // The user moves the zone to DigitalOcean DNS (doctl compute domain create), then asks again.
  assert.equal((await doApi('POST', '/domains', { name: ZONE })).status, 201);
  const made = await user.plumb(['lb', 'https', GROUP, '--domain', DOMAIN, '--json']);
  assert.equal(made.exitCode, 0, made.stderr);
  const result = JSON.parse(made.stdout) as { url: string; certificate: { reused: boolean }; redirect: boolean };
  assert.equal(result.url, `https://${DOMAIN}/`);
  assert.deepEqual([result.certificate.reused, result.redirect], [false, true]);
  const records = (await doApi('GET', `/domains/${ZONE}/records`)).json.domain_records as { type: string; name: string; data: string }[];
  assert.ok(records.some((r) => r.type === 'A' && r.name === 'api' && r.data === balancerIp), `the domain points at the balancer: ${JSON.stringify(records)}`);

  const secure = await viaBalancer('https', '/sum/version');
  assert.equal(secure.status, 200, secure.body);
  const served = await Promise.all(members.map((m) => versionOn(m.ipv4)));
  assert.ok(served.includes(secure.body), `the API of a member answers over TLS: ${secure.body} (members: ${served.join(', ')})`);
  const plain = await viaBalancer('http', '/sum/version?x=1');
  assert.ok(plain.status === 301 || plain.status === 308, `http answers a permanent redirect, not ${plain.status}`);
  assert.equal(plain.location, `https://${DOMAIN}/sum/version?x=1`);

  // Run again without the redirect: the certificate is reused and port 80 serves again.
  const again = await user.plumb(['lb', 'https', GROUP, '--domain', DOMAIN, '--no-redirect']);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`^https://${DOMAIN.replaceAll('.', '\\.')}/ answers through plumb-${GROUP} .*\\(already there\\)`, 'm'));
  assert.equal((await viaBalancer('http', '/sum/version')).status, 200);
  assert.equal(((await doApi('GET', '/certificates')).json.certificates as unknown[]).length, 1, 'the second run reused the certificate');
});

test('three group redeploys under a steady load through the balancer, over http and https: no request fails', async () => {
  const load = startLoad(`http://${balancerIp}/sum/add?a=1&b=2`, { rps: 20, concurrency: 4, maxMs: 240_000 });
  const secure = startLoad(`https://${balancerIp}/sum/add?a=1&b=2`, { rps: 5, concurrency: 2, maxMs: 240_000, expectStatus: 200, tls: { ca: labCa, servername: DOMAIN } });
  for (const version of ['v2', 'v3', 'v4']) {
    const deployed = await deployGroup(version);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.match(deployed.stdout, new RegExp(`deployed sum on every droplet of group ${GROUP} \\(3\\)`));
  }
  const report = await load.stop();
  assert.equal(report.failed, 0, report.failures.join('\n'));
  assert.ok(report.ok > 50, `only ${report.ok} requests answered`);
  const overTls = await secure.stop();
  assert.equal(overTls.failed, 0, overTls.failures.join('\n'));
  assert.ok(overTls.ok > 10, `only ${overTls.ok} requests answered over https`);
  for (const d of members) assert.equal(await versionOn(d.ipv4), '["v4"]');
  assert.equal((await httpGet(`http://${balancerIp}/sum/version`)).body, '["v4"]');
});

test('a deploy failing its health gate on the second droplet stops there; rollback --group puts back one release everywhere', async () => {
  const [first, second, third] = members;
  assert.ok(first && second && third);
  // R code that refuses to start on the second droplet only (its hostname is the droplet's name).
  const failsOnSecond = groupApi('v5', `if (Sys.info()[["nodename"]] == "${second.name}") stop("this release cannot start on ${second.name}")\n`);
  // The same user's other laptop, set up before this deploy (its keys and droplets, no record of
  // the deploy): it undoes the deploy from what the droplets' agents keep.
  const laptop = await mkdtemp(path.join(os.tmpdir(), 'plumb-laptop-'));
  await cp(path.join(user.configHome, 'plumb'), path.join(laptop, 'plumb'), { recursive: true });
  const onLaptop = { env: { XDG_CONFIG_HOME: laptop } };
  const deployed = await user.plumb(['deploy', await apiDir(failsOnSecond), '--name', 'sum', '--group', GROUP]);
  assert.equal(deployed.exitCode, 1, deployed.stdout);
  assert.match(deployed.stdout, /stopped at the first failure/);
  assert.match(deployed.stdout, new RegExp(`${first.name}: \\S+ -> \\S+`));
  assert.match(deployed.stdout, new RegExp(`${second.name}: FAILED \\(the new release did not come up`));
  assert.match(deployed.stdout, /Execution halted/, "the failing droplet's last log lines (R's) are shown");
  assert.match(deployed.stdout, new RegExp(`${third.name}: untouched`));
  assert.deepEqual([await versionOn(first.ipv4), await versionOn(second.ipv4), await versionOn(third.ipv4)], ['["v5"]', '["v4"]', '["v4"]']);

  const rolled = await user.plumb(['rollback', 'sum', '--group', GROUP], onLaptop);
  assert.equal(rolled.exitCode, 0, rolled.stderr);
  assert.match(rolled.stdout, new RegExp(`rolled back sum on every droplet of group ${GROUP}`));
  for (const d of members) assert.equal(await versionOn(d.ipv4), '["v4"]');
  assert.deepEqual((await groupStatus()).json.drifted, [], 'the rolled-back release is the current one, on every droplet');
  // Undone is undone, whichever laptop asks.
  const again = await user.plumb(['rollback', 'sum', '--group', GROUP]);
  assert.equal(again.exitCode, 1);
  assert.match(again.stderr, /no group deploy of sum to web to undo/);
});

const certificateNames = async () => ((await doApi('GET', '/certificates')).json.certificates as { name: string }[]).map((c) => c.name).sort();
const aRecords = async () => ((await doApi('GET', `/domains/${ZONE}/records`)).json.domain_records as { type: string; name: string; data: string }[]).filter((r) => r.type === 'A').map((r) => `${r.name} ${r.data}`).sort();

test('lb https --off takes HTTPS off the balancer and deletes the certificate plumb made (once DigitalOcean lets go of it); the DNS record stays', async () => {
  const balancer = async () => ((await doApi('GET', '/load_balancers')).json.load_balancers as { forwarding_rules: { entry_port: number }[]; redirect_http_to_https: boolean }[])[0];
  // HTTPS with the redirect again (the certificate is reused), then off.
  assert.equal((await user.plumb(['lb', 'https', GROUP, '--domain', DOMAIN])).exitCode, 0);
  assert.ok([301, 308].includes((await viaBalancer('http', '/sum/version')).status), 'http redirects to https');
  const both = await user.plumb(['lb', 'https', GROUP, '--domain', DOMAIN, '--off']);
  assert.equal(both.exitCode, 2, both.stderr);
  const off = await user.plumb(['lb', 'https', GROUP, '--off']);
  assert.equal(off.exitCode, 0, off.stderr);
  assert.match(off.stdout, new RegExp(`^HTTPS is off on plumb-${GROUP} .*\\n  removed certificate plumb-${GROUP}-[0-9a-f]{10}$`));
  const plain = await balancer();
  assert.deepEqual([plain?.forwarding_rules.map((r) => r.entry_port), plain?.redirect_http_to_https], [[80], false]);
  assert.deepEqual(await certificateNames(), []);
  assert.equal((await viaBalancer('http', '/sum/version')).status, 200, 'port 80 serves again, no redirect');
  await assert.rejects(viaBalancer('https', '/sum/version'), 'port 443 is closed');
  assert.deepEqual(await aRecords(), [`api ${balancerIp}`], 'the name still reaches the balancer, over http');
  assert.match((await user.plumb(['lb', 'https', GROUP, '--off'])).stdout, /HTTPS was not on .*nothing changed/);
});

test('a droplet powered off: the balancer takes it out within its unhealthy window, then every request succeeds', async () => {
  const [, , third] = members;
  assert.ok(third);
  thirdBeforeOff = await versionOn(third.ipv4);
  const during = startLoad(`http://${balancerIp}/sum/add?a=1&b=2`, { rps: 20, concurrency: 4, maxMs: 120_000 });
  const api = clientFor(lab);
  const { action } = (await api.droplet.powerOffDroplet({ droplet_id: third.id })).data;
  assert.equal(await waitAction(api, action.id), 'completed');
  const view = await untilBalancer((row) => row.droplets.find((d) => d.id === third.id)?.healthy === false, `${third.name} out`);
  await during.stop();
  assert.deepEqual(view.droplets.filter((d) => d.healthy).map((d) => d.id).sort(), members.filter((d) => d.id !== third.id).map((d) => d.id).sort());
  const afterwards = startLoad(`http://${balancerIp}/sum/add?a=1&b=2`, { rps: 20, concurrency: 4, maxMs: 5_000 });
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const report = await afterwards.stop();
  assert.equal(report.failed, 0, report.failures.join('\n'));
  assert.ok(report.ok > 20, `only ${report.ok} requests answered`);
});

/** The version each member serves, for those given. */
const versionsOn = (ms: Member[]) => Promise.all(ms.map((m) => versionOn(m.ipv4)));

test('a group deploy while a droplet is off changes nothing and says which droplet could not be asked', async () => {
  const [first, second, third] = members;
  assert.ok(first && second && third);
  const before = await versionsOn([first, second]);
  // Its mark of the group's last deploy cannot be read, so the deploy could not be numbered safely: nothing is deployed.
  const refused = await user.plumb(['deploy', await apiDir(groupApi('v5')), '--name', 'sum', '--group', GROUP]);
  assert.equal(refused.exitCode, 3, `${refused.stderr}\n${refused.stdout}`);
  assert.match(refused.stderr, new RegExp(`^plumb: a droplet of group ${GROUP} could not be asked: ${third.name} .*nothing was deployed`, 'm'));
  assert.match(refused.stderr, /--skip-unreachable/);
  assert.deepEqual(await versionsOn([first, second]), before);
});

test('--skip-unreachable deploys to the others; rollback --group while a droplet is off rolls back the others and says it could not be asked (exit 3)', async () => {
  const [first, second, third] = members;
  assert.ok(first && second && third);
  const v5 = await apiDir(groupApi('v5'));
  const before = await versionsOn([first, second]);
  const deployed = await user.plumb(['deploy', v5, '--name', 'sum', '--group', GROUP, '--skip-unreachable']);
  assert.equal(deployed.exitCode, 0, deployed.stderr);
  assert.match(deployed.stdout, new RegExp(`except ${third.name} \\(could not be asked\\)`));
  assert.match(deployed.stdout, new RegExp(`^  ${third.name}: SKIPPED, could not be asked`, 'm'));
  assert.deepEqual(await versionsOn([first, second]), ['["v5"]', '["v5"]']);

  const rolled = await user.plumb(['rollback', 'sum', '--group', GROUP]);
  assert.equal(rolled.exitCode, 3, `${rolled.stderr}\n${rolled.stdout}`);
  assert.match(rolled.stdout, new RegExp(`^rolled back sum on group ${GROUP} in [\\d.]+ s, except ${third.name} \\(could not be asked\\)`, 'm'));
  assert.match(rolled.stdout, new RegExp(`^  ${third.name}: SKIPPED, could not be asked \\(.+\\); once it is back, \`plumb group sync ${GROUP}\` gives it the release the others went back to$`, 'm'));
  for (const m of [first, second]) assert.match(rolled.stdout, new RegExp(`^  ${m.name}: \\S+ -> \\S+$`, 'm'));
  assert.doesNotMatch(rolled.stdout, /untouched/);
  assert.deepEqual(await versionsOn([first, second]), before, 'the others are back on what they ran before');
  // Deployed again, so the droplet that is off misses a deploy that stays live.
  const again = await user.plumb(['deploy', v5, '--name', 'sum', '--group', GROUP, '--skip-unreachable']);
  assert.equal(again.exitCode, 0, again.stderr);
});

test("powered on again, the droplet that missed the group's deploy is flagged by status --group; group sync copies the group's release to it", async () => {
  const [first, second, third] = members;
  assert.ok(first && second && third);
  const api = clientFor(lab);
  const v5 = await apiDir(groupApi('v5'));
  assert.equal(await waitAction(api, (await api.droplet.powerOnDroplet({ droplet_id: third.id })).data.action.id), 'completed');
  // Back on, it serves what it served before the deploy, so the balancer counts it healthy: only plumb can tell.
  await untilBalancer(allHealthy, `${third.name} healthy again`);
  assert.deepEqual([await versionOn(first.ipv4), await versionOn(second.ipv4), await versionOn(third.ipv4)], ['["v5"]', '["v5"]', thirdBeforeOff]);
  const drifted = await groupStatus();
  assert.deepEqual(drifted.json.drifted, [third.name]);
  assert.match(drifted.text, new RegExp(`not on the group's current release: ${third.name} \\(\`plumb group sync ${GROUP}\``));
  assert.match(drifted.text, new RegExp(`^    ${third.name}: \\S+ \\(content \\w+\\)  DRIFT`, 'm'));

  const synced = await user.plumb(['group', 'sync', GROUP]);
  assert.equal(synced.exitCode, 0, synced.stderr);
  assert.match(synced.stdout, new RegExp(`sum: release \\S+ of (${first.name}|${second.name}), copied to\\n    ${third.name}: \\S+ -> \\S+`));
  assert.equal(await versionOn(third.ipv4), '["v5"]');
  assert.deepEqual((await groupStatus()).json.drifted, []);

  // The same code with another --env (and a memory limit), deployed to one droplet by hand: it
  // behaves differently, so it drifts; the sync puts back the group's env and its memory limit (none
  // given: plumb's default share of RAM, as on a member that never had --memory).
  const byHand = await user.plumb(['deploy', v5, '--name', 'sum', '--droplet', third.name, '--env', 'MODE=debug', '--memory', '400M']);
  assert.equal(byHand.exitCode, 0, byHand.stderr);
  const memoryMax = (id = third.id) => lab.droplet(id).exec(['sh', '-c', 'systemctl show -p MemoryMax --value $(systemctl list-units --plain --no-legend "plumber-sum@*" | cut -d" " -f1) | sed /^$/d | sort -u']);
  const groupMemoryMax = await memoryMax(first.id);
  assert.notEqual(groupMemoryMax, String(400 * 1024 * 1024));
  assert.equal(await memoryMax(), String(400 * 1024 * 1024));
  assert.deepEqual((await groupStatus()).json.drifted, [third.name], 'another env is drift, though the files are the same');
  const resynced = await user.plumb(['group', 'sync', GROUP]);
  assert.equal(resynced.exitCode, 0, resynced.stderr);
  assert.equal(await memoryMax(), groupMemoryMax);
  assert.deepEqual((await groupStatus()).json.drifted, []);
  const again = await user.plumb(['group', 'sync', GROUP]);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.match(again.stdout, /already runs the group's current release/);
});

test("lb destroy removes the certificate and the DNS record plumb made, and keeps the user's own", async () => {
  // HTTPS again, and the user's own record and certificate in the same zone.
  assert.equal((await user.plumb(['lb', 'https', GROUP, '--domain', DOMAIN])).exitCode, 0);
  assert.equal((await doApi('POST', `/domains/${ZONE}/records`, { type: 'A', name: 'www', data: '192.0.2.10' })).status, 201);
  assert.equal((await doApi('POST', '/certificates', { name: 'mine', type: 'lets_encrypt', dns_names: [`www.${ZONE}`] })).status, 201);
  const destroyed = await user.plumb(['lb', 'destroy', GROUP, '--yes']);
  assert.equal(destroyed.exitCode, 0, destroyed.stderr);
  assert.match(destroyed.stdout, new RegExp(`^destroyed load balancer plumb-${GROUP} .*\\n  removed certificate plumb-${GROUP}-[0-9a-f]{10}\\n  removed DNS record ${DOMAIN.replaceAll('.', '\\.')} A ${balancerIp.replaceAll('.', '\\.')}$`));
  assert.deepEqual(await certificateNames(), ['mine']);
  assert.deepEqual(await aRecords(), ['www 192.0.2.10']);
  assert.match((await user.plumb(['lb'])).stdout, /no load balancers/);
  for (const m of members) assert.equal((await httpGet(`http://${m.ipv4}/sum/version`, ANSWER_MS)).status, 200, 'the droplets stay');
});

test('remove --group takes the API off every droplet', async () => {
  const refused = await user.plumb(['remove', 'sum', '--group', GROUP]);
  assert.equal(refused.exitCode, 2, 'without --yes off a terminal it asks, and so refuses');
  const removed = await user.plumb(['remove', 'sum', '--group', GROUP, '--yes']);
  assert.equal(removed.exitCode, 0, removed.stderr);
  for (const m of members) {
    assert.match(removed.stdout, new RegExp(`^${m.name}: removed sum`, 'm'));
    assert.equal((await httpGet(`http://${m.ipv4}/sum/version`)).status, 404);
  }
  assert.match((await groupStatus()).text, /no APIs yet/);
});
