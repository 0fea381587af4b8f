import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { AGENT_PATHS, AGENT_PORT, BUNDLE_MAX_RATIO, pollUntil } from '@plumb/shared';
import { loadSigningKey } from '@plumb/controller/local/keys';
import type { AuthTarget } from '../cases/agent-auth.cases.js';
import { agentFuzzCases } from '../cases/agent-fuzz.cases.js';
import { agentSocket } from '../cases/agent-socket.js';
import { pax, rawTar, type RawEntry } from '../cases/raw-tar.js';
import type { Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { agentAnswersAgain, apiStatus, sharedDroplet, sparesDecided, type ApiStatusRow, type PlumbUser } from './plumb.js';

/**
 * The hostile-input and fault suite of issue 12 on one droplet: bundles in every tar header form,
 * kill -9 of the agent at each stage of a deploy, a full disk, and an API that probes what it can
 * reach. Each ends the same way: a clear one-line error (or a coherent restart), the live release
 * serving, and nothing on the droplet that the state does not account for.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;
/** The droplet's agent as the user's plumb reaches it: for what `plumb` would never send. */
let target: AuthTarget;

const onDroplet = (argv: string[], timeoutMs?: number) => lab.droplet(dropletId).exec(argv, timeoutMs === undefined ? {} : { timeoutMs });
const sh = (script: string) => onDroplet(['sh', '-c', script]);
const version = async (name: string) => JSON.parse((await httpGet(`http://${address}/${name}/version`, 10_000)).body) as unknown;

sharedDroplet('hostile', async (shared) => {
  ({ lab, user, id: dropletId, address } = shared);
  const { droplets } = JSON.parse(await readFile(path.join(user.configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: Array<{ uuid: string; fingerprint: string }> };
  target = { address: { host: address, port: AGENT_PORT }, dropletUuid: droplets[0]!.uuid, pin: droplets[0]!.fingerprint, key: await loadSigningKey(path.join(user.configHome, 'plumb')) };
  const deployed = await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'victim', '--env', 'VICTIM_SECRET=s3cret-token']);
  assert.equal(deployed.exitCode, 0, deployed.stderr);
  await sh('echo private > /var/plumber/victim/data/secret.txt && chown plumber-victim: /var/plumber/victim/data/secret.txt && chmod 600 /var/plumber/victim/data/secret.txt');
});

/**
 * Everything on the droplet a deploy could touch or an escaping entry could land in, with type,
 * size, mode and owner. Left out: what changes by itself (the event log, R's caches, the journal).
 */
const listing = () =>
  sh(
    "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /var/log -o -path /var/cache -o -path /var/tmp -o -path '/var/lib/plumb/events*' -o -path /var/lib/systemd -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /usr -o -path /tmp -o -path '/var/plumber/*/home' \\) -prune -o -printf '%p %y %s %m %U\\n' | sort",
  );

/** A socket to the agent as the controller opens one, with every message it answers kept. */
async function rawSession() {
  const { ws } = await agentSocket(target);
  ws.on('error', () => {});
  const messages: Array<{ type: string; id: number; step?: string; error?: { code: string; message: string } }> = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data)) as (typeof messages)[number]));
  await once(ws, 'open');
  const answer = async (id: number) => {
    for (let i = 0; i < 1200; i++) {
      const found = messages.find((m) => m.id === id && (m.type === 'error' || m.type === 'result'));
      if (found) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no answer to request ${id}: ${JSON.stringify(messages)}`);
  };
  return { ws, messages, answer };
}

/** A deploy of `victim` whose bundle is these bytes, as the wire carries it. */
async function deployBytes(bundle: Buffer): Promise<{ code: string; message: string } | undefined> {
  const { ws, answer } = await rawSession();
  ws.send(JSON.stringify({ type: 'deploy', id: 1, name: 'victim', forward: false, wait: false }));
  for (let i = 0; i < bundle.length; i += 256 * 1024) ws.send(bundle.subarray(i, i + 256 * 1024), { binary: true });
  ws.send(JSON.stringify({ type: 'upload-end', id: 1, bytes: bundle.length }));
  const got = await answer(1);
  ws.close();
  return got.error;
}

const plumberR = { path: 'plumber.R', body: '#* @get /version\nfunction() "pwned"\n' };
const tgz = (entries: RawEntry[]) => gzipSync(rawTar(entries));
const HOSTILE_BUNDLES: Array<[string, () => Buffer, RegExp]> = [
  ['a GNU long name climbing out', () => tgz([plumberR, { path: '././@LongLink', type: 'gnuLongName', body: '../../../../etc/cron.d/pwned\0' }, { path: 'short', body: '* * * * * root touch /pwned\n' }]), /"\.\.\/\.\.\/\.\.\/\.\.\/etc\/cron\.d\/pwned" would land outside the release/],
  ['a GNU long link to /etc/shadow', () => tgz([plumberR, { path: '././@LongLink', type: 'gnuLongLink', body: '/etc/shadow\0' }, { path: 'shadow', type: 'symlink', linkpath: 'x' }]), /"shadow" is a symbolic link \(to "\/etc\/shadow"\)/],
  ['a pax path climbing out', () => tgz([plumberR, { path: 'PaxHeader/x', type: 'pax', body: pax({ path: '../../../../root/.ssh/authorized_keys' }) }, { path: 'x', body: 'ssh-ed25519 AAAA attacker' }]), /"\.\.\/\.\.\/\.\.\/\.\.\/root\/\.ssh\/authorized_keys" would land outside the release/],
  ['a pax linkpath hard link to the agent state', () => tgz([plumberR, { path: 'PaxHeader/s', type: 'pax', body: pax({ linkpath: '/var/lib/plumb/state.json' }) }, { path: 'state', type: 'link', linkpath: 'plumber.R' }]), /"state" is a hard link \(to "\/var\/lib\/plumb\/state\.json"\)/],
  ['a symlink out, then a file through it', () => tgz([plumberR, { path: 'evil', type: 'symlink', linkpath: '/etc/cron.d' }, { path: 'evil/pwned', body: 'x' }]), /"evil" is a symbolic link \(to "\/etc\/cron\.d"\)/],
  ['a hard link to /etc/shadow', () => tgz([plumberR, { path: 'shadow', type: 'link', linkpath: '/etc/shadow' }]), /"shadow" is a hard link/],
  ['a character device', () => tgz([plumberR, { path: 'mem', type: 'char' }]), /"mem" is a character device/],
  ['a FIFO', () => tgz([plumberR, { path: 'pipe', type: 'fifo' }]), /"pipe" is a FIFO/],
  ['an absolute path', () => tgz([plumberR, { path: '/etc/cron.d/pwned', body: 'x' }]), /"\/etc\/cron\.d\/pwned" is an absolute path/],
  ['.. inside a path', () => tgz([plumberR, { path: 'R/../../../current', body: 'x' }]), /would land outside the release/],
  ['the same file twice', () => tgz([plumberR, plumberR]), /"plumber\.R" appears twice/],
  ['a ratio bomb (50 MB of zeros)', () => tgz([plumberR, { path: 'zeros.bin', body: Buffer.alloc(50 * 1024 * 1024) }]), new RegExp(`expands more than ${BUNDLE_MAX_RATIO} times`)],
  ['a truncated archive', () => gzipSync(rawTar([plumberR, { path: 'big.R', body: 'x'.repeat(10_000) }]).subarray(0, 2048)), /not a valid tar archive \(TAR_BAD_ARCHIVE: Truncated input/],
  ['a cut gzip stream', () => tgz([plumberR]).subarray(0, 40), /cut short/],
  ['not gzip at all', () => Buffer.from('PK\u0003\u0004 a zip file'), /not gzip/],
];

test(`${HOSTILE_BUNDLES.length} hostile bundles in every tar header form: each refused with one line, nothing on the droplet changed, the live release serves`, async () => {
  const before = await listing();
  for (const [what, bundle, message] of HOSTILE_BUNDLES) {
    const error = await deployBytes(bundle());
    assert.equal(error?.code, 'BUNDLE_REFUSED', `${what}: ${JSON.stringify(error)}`);
    assert.match(error?.message ?? '', message, what);
    assert.doesNotMatch(error?.message ?? '', /\n/, what);
  }
  assert.equal(await listing(), before, 'no file appeared, vanished or changed');
  assert.deepEqual(await version('victim'), ['v1']);
});

/** What `plumb status` says the droplet runs, checked against what systemd runs and what is on disk. */
async function assertCoherent(name: string): Promise<ApiStatusRow> {
  // The warm spare a deploy starts behind its answer (auto) runs too, once decided; it is not started at boot.
  await sparesDecided(user);
  const row = await apiStatus(user, name);
  assert.ok(row, `${name} is in the state`);
  const running = (await sh(`systemctl list-units --plain --no-legend --state=active,activating 'plumber-${name}@*.service' | cut -d' ' -f1 | sort`)).split('\n').filter(Boolean);
  assert.deepEqual(running, [...row.workers, ...row.draining, ...(row.spare ? [row.spare] : [])].map((w) => `plumber-${name}@${w.port}.service`).sort(), 'exactly the state\'s workers (and the spare plumb status shows) run');
  // A rollout links its new workers to start at boot while R loads: one cut before its switch must not leave them linked.
  const atBoot = (await sh(`ls /etc/systemd/system/multi-user.target.wants | grep '^plumber-${name}@' || true`)).split('\n').filter(Boolean).sort();
  assert.deepEqual(atBoot, [...row.workers, ...row.draining].map((w) => `plumber-${name}@${w.port}.service`).sort(), 'exactly the state\'s workers start at boot');
  const releases = JSON.parse((await user.plumb(['releases', name, '--json'])).stdout) as { releases: Array<{ id: string }> } | Array<{ releases: Array<{ id: string }> }>;
  const ids = (Array.isArray(releases) ? releases[0]!.releases : releases.releases).map((r) => r.id).sort();
  assert.deepEqual((await sh(`ls /var/plumber/${name}/releases`)).split('\n').filter(Boolean).sort(), ids, 'no release directory the state does not list');
  assert.equal(await sh(`readlink /var/plumber/${name}/current`), `releases/${row.release}`);
  assert.equal(await sh('ls -A /var/lib/plumb/deploying /var/lib/plumb/crash-points 2>/dev/null | grep -v : || true'), '', 'no deploy marker or crash point left');
  return row;
}

/** GETs the API until told to stop: how many requests failed meanwhile. */
function keepAsking(name: string): { stop: () => Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  const failed: string[] = [];
  let ok = 0;
  const loop = (async () => {
    for (let i = 0; running && i < 5000; i++) {
      const r = await httpGet(`http://${address}/${name}/version`, 10_000).catch((err: Error) => ({ status: 0, body: err.message }));
      if (r.status === 200) ok++;
      else failed.push(`${r.status} ${r.body.slice(0, 80)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ok, failed };
    },
  };
}

/**
 * kill -9 of the agent at `point` of `operation` (a deploy or a rollback of `victim`), with
 * requests going on: the CLI says the connection was lost and to look at `plumb status`; when the
 * agent is back, the state matches what runs and what is on disk, and the release that serves is
 * the old one (cut before the state was saved) or the new one (after).
 */
async function killedAt(point: string, operation: () => Promise<{ exitCode: number; stderr: string }>, outcome: 'old' | 'new', newVersion: unknown): Promise<void> {
  const before = await assertCoherent('victim');
  const was = await version('victim');
  // The gate: a root-owned file in the agent's root-only state directory (packages/agent/src/crash-point.ts).
  await sh(`mkdir -p -m 0700 /var/lib/plumb/crash-points && touch /var/lib/plumb/crash-points/${point}`);
  const load = keepAsking('victim');
  const cut = await operation();
  assert.equal(cut.exitCode, 3, cut.stderr);
  assert.match(cut.stderr, /plumb status/);
  assert.ok(await agentAnswersAgain(user), 'the agent answers again');
  const { ok, failed } = await load.stop();
  assert.deepEqual(failed, [], `${ok} requests answered`);
  const now = await assertCoherent('victim');
  if (outcome === 'old') {
    assert.equal(now.release, before.release);
    assert.deepEqual(await version('victim'), was);
  } else {
    assert.notEqual(now.release, before.release);
    assert.deepEqual(await version('victim'), newVersion);
  }
  // The agent that started again decided the API's warm spare anew (spare-decide.ts resumeSpares): its env file is the spare's.
  assert.equal(await sh(`ls /var/lib/plumb/instances | grep '^victim@' | sort`), [...now.workers, ...(now.spare ? [now.spare] : [])].map((w) => `victim@${w.port}.env`).sort().join('\n'), 'env files of exactly the live workers (and the spare plumb status shows)');
}

for (const [point, outcome] of [
  ['bundle-received', 'old'],
  ['routing-applied', 'old'],
  ['state-saved', 'new'],
] as const) {
  test(`kill -9 at "${point}" of a deploy: the agent reconciles, the ${outcome} release serves with exactly its workers, no orphans, and the API answered throughout`, async () => {
    await killedAt(point, async () => user.plumb(['deploy', await apiDir(sumApi(point)), '--name', 'victim']), outcome, [point]);
  });
}

for (const [point, outcome] of [
  ['routing-applied', 'old'],
  ['state-saved', 'new'],
] as const) {
  test(`kill -9 at "${point}" of a rollback: the ${outcome === 'old' ? 'release live before it' : 'release rolled back to'} serves with exactly its workers, no orphans, and the API answered throughout`, async () => {
    // What the release a rollback goes to answers, read from its code (sumApi's /version).
    const releases = (await sh('ls /var/plumber/victim/releases')).split('\n').sort();
    const previous = releases[releases.indexOf((await assertCoherent('victim')).release) - 1];
    assert.ok(previous, `a release before the live one: ${releases.join(' ')}`);
    const code = await sh(`cat /var/plumber/victim/releases/${previous}/plumber.R`);
    const target = /@get \/version\nfunction\(\) \{\n {2}"([^"]*)"/.exec(code)?.[1];
    await killedAt(point, () => user.plumb(['rollback', 'victim']), outcome, [target]);
  });
}

test('kill -9 while the bundle is arriving: the partial release is removed, the live one serves', async () => {
  const before = await assertCoherent('victim');
  const { ws, messages } = await rawSession();
  ws.send(JSON.stringify({ type: 'deploy', id: 1, name: 'victim', forward: false, wait: false }));
  // Incompressible: a constant body would be refused at once as a decompression bomb.
  ws.send(tgz([plumberR, { path: 'big.bin', body: randomBytes(4 * 1024 * 1024) }]).subarray(0, 64 * 1024), { binary: true });
  for (let i = 0; i < 100 && !messages.some((m) => m.step === 'receiving the bundle'); i++) await new Promise((r) => setTimeout(r, 200));
  assert.ok(messages.some((m) => m.step === 'receiving the bundle'), JSON.stringify(messages));
  assert.match(await sh('ls /var/lib/plumb/deploying /var/plumber/victim/releases'), /victim\.json/, `the deploy is receiving: ${JSON.stringify(messages)}`);
  await onDroplet(['systemctl', 'kill', '--signal=SIGKILL', 'plumb-agent']);
  ws.terminate();
  assert.ok(await agentAnswersAgain(user));
  const now = await assertCoherent('victim');
  assert.equal(now.release, before.release);
});

test('a full disk during a deploy: a clear DISK_FULL error, the live release serves, nothing half-written', async () => {
  // A 3 MiB filesystem for this API's releases only: the host's disk is never filled.
  await sh('mkdir -p /var/plumber/full/releases && mount -t tmpfs -o size=3m,mode=0755 plumb-full /var/plumber/full/releases');
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('small')), '--name', 'full'])).exitCode, 0);
  const before = await assertCoherent('full');
  const big = { ...sumApi('big'), 'model.bin': randomBytes(6 * 1024 * 1024).toString('base64') };
  const failed = await user.plumb(['deploy', await apiDir(big), '--name', 'full', '--full']);
  assert.equal(failed.exitCode, 1, failed.stderr);
  assert.match(failed.stderr, /disk filled up while the release was written/);
  assert.match(failed.stderr, /live release is untouched/);
  const now = await assertCoherent('full');
  assert.equal(now.release, before.release);
  assert.deepEqual(await version('full'), ['small']);
  assert.equal(await sh('ls /var/plumber/full/manifests'), `${before.release}.json`, 'no manifest of the failed release');
});

/** An API that tries everything it should not be able to do and reports, per attempt, whether it worked. */
const proberApi = (victimPort: number) => ({
  'plumber.R': `
can <- function(expr) tryCatch({ force(expr); TRUE }, error = function(e) FALSE, warning = function(w) FALSE)
reads <- function(p) can(readLines(p, n = 1))
connects <- function(host, port) can({ con <- socketConnection(host, port, blocking = TRUE, open = "r+", timeout = 3); close(con) })
#* @get /probe
#* @serializer unboxedJSON
function() {
  others <- setdiff(list.files("/proc", pattern = "^[0-9]+$"), c(as.character(Sys.getpid()), "1"))
  # Another user's (another API's, root's): its own warm spare runs as this API's user too.
  owner <- file.info(file.path("/proc", others), extra_cols = TRUE)$uname
  others <- others[!is.na(owner) & owner != Sys.info()[["effective_user"]]]
  environ_of <- function(p) tryCatch({ r <- readBin(file.path("/proc", p, "environ"), "raw", 65536); rawToChar(r[r != as.raw(0)]) }, error = function(e) "")
  env_leak <- any(vapply(others, function(p) grepl("s3cret", environ_of(p), fixed = TRUE), logical(1)))
  list(
    agent_state = reads("/var/lib/plumb/state.json"),
    agent_key = reads("/var/lib/plumb/tls/agent.key"),
    agent_config = reads("/etc/plumb-agent/config.json"),
    agent_dir = can(stopifnot(length(list.files("/var/lib/plumb")) > 0)),
    victim_env_file = can(stopifnot(length(list.files("/var/lib/plumb/instances")) > 0)),
    victim_data = reads("/var/plumber/victim/data/secret.txt"),
    victim_code = reads("/var/plumber/victim/current/plumber.R"),
    victim_write = can(writeLines("x", "/var/plumber/victim/data/pwned")),
    victim_environ = env_leak,
    other_processes = length(others) > 0,
    cloud_user_data = can(stopifnot(length(list.files("/var/lib/cloud", recursive = TRUE)) > 0)),
    write_system = can(writeLines("x", "/etc/cron.d/pwned")),
    write_runner = can(writeLines("x", "/usr/lib/plumb/run-api.R")),
    metadata = connects("169.254.169.254", 80),
    victim_worker_port = connects("127.0.0.1", ${victimPort}),
    agent_without_token = can(stopifnot(system2("curl", c("-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:${AGENT_PORT}${AGENT_PATHS.socket}"), stdout = TRUE) %in% c("101", "200")))
  )
}
`,
});

/** What the hostile API could do, per attempt (200), or nginx's answer while its route is gone (502). */
async function probe(): Promise<{ status: number; reached: string[]; body: string }> {
  const answer = await httpGet(`http://${address}/prober/probe`, 60_000);
  if (answer.status !== 200) return { status: answer.status, reached: [], body: answer.body };
  const probed = JSON.parse(answer.body) as Record<string, boolean>;
  assert.equal(Object.keys(probed).length, 16, answer.body);
  return { status: 200, reached: Object.entries(probed).filter(([, ok]) => ok).map(([what]) => what), body: answer.body };
}

test('a hostile API probes the agent, another API (its files, environment and workers on loopback), the cloud-init data and the metadata address, and reaches nothing', async () => {
  const victim = await assertCoherent('victim');
  const deployed = await user.plumb(['deploy', await apiDir(proberApi(victim.workers[0]!.port)), '--name', 'prober']);
  assert.equal(deployed.exitCode, 0, deployed.stderr);
  const { status, reached, body } = await probe();
  assert.equal(status, 200, body);
  assert.deepEqual(reached, [], `the hostile API could: ${body}`);
  assert.equal(await sh('ls /var/plumber/victim/data'), 'secret.txt');
});

test('the APIs stay kept apart when the firewall is flushed (`nft flush ruleset`), ufw reloads or the agent restarts', async () => {
  const isolatedAgain = async (what: string) => {
    // Until the agent has put its table back, nginx has no route to the prober either (502).
    const answered = await pollUntil(async () => {
      const seen = await probe();
      return seen.status === 200 ? seen : undefined;
    }, { timeoutMs: 60_000, intervalMs: 500 });
    assert.ok(answered, `the prober never answered again after ${what}`);
    assert.deepEqual(answered.reached, [], `after ${what} the hostile API could: ${answered.body}`);
  };
  await sh('nft flush ruleset');
  await isolatedAgain('nft flush ruleset');
  const events = (JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status: { events: Array<{ kind: string; detail: string }> } }>)[0]!.status.events;
  assert.ok(events.some((e) => e.kind === 'routing-restored' && /kept apart/.test(e.detail)), JSON.stringify(events.slice(-3)));
  await sh('ufw reload');
  await isolatedAgain('ufw reload');
  // Stopped, its table flushed meanwhile, started: the agent's start-up puts it back.
  await sh('systemctl stop plumb-agent && nft flush ruleset && systemctl start plumb-agent');
  assert.ok(await agentAnswersAgain(user));
  await isolatedAgain('an agent restart');
  // The agent started again decides each API's spare, one loading at a time: done before the next
  // test lists the droplet's files (a spare's env file would appear in the middle of it).
  await sparesDecided(user);
});

agentFuzzCases(() => target, { runs: 8, remote: true, snapshot: async () => `${await listing()}\n${await sh('sha256sum /var/lib/plumb/state.json')}` });
