import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import WebSocket from 'ws';
import { AGENT_PORT, UPLOAD_IDLE_TIMEOUT_MS, WS_PING_INTERVAL_MS } from '@plumb/shared';
import { loadSigningKey } from '@plumb/controller/local/keys';
import { agentSocket } from '../cases/agent-socket.js';
import { rawTar } from '../cases/raw-tar.js';
import type { Lab } from '../lab/lab.js';
import { apiDir, crashingApi, sumApi } from './api-fixtures.js';
import { httpGet, settled } from './helpers.js';
import { agentAnswersAgain, sharedDroplet, type PlumbUser } from './plumb.js';

/**
 * Bad luck and bad input on one droplet (issue: the agent survives everything, loses nothing,
 * leaves nothing behind): what the operator's data and terminal must never suffer.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;

const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
const get = (path: string) => httpGet(`http://${address}${path}`, 5000);

sharedDroplet('faults', (shared) => void ({ lab, user, id: dropletId, address } = shared));

test('remove --keep-files, then a deploy of that name that fails: data/ is still there', async () => {
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'keep'])).exitCode, 0);
  await onDroplet(['sh', '-c', 'echo precious > /var/plumber/keep/data/model.rds']);
  const removed = await user.plumb(['remove', 'keep', '--keep-files', '--yes']);
  assert.equal(removed.exitCode, 0, removed.stderr);
  const failed = await user.plumb(['deploy', await apiDir(crashingApi), '--name', 'keep', '--health-timeout', '10']);
  assert.equal(failed.exitCode, 1, 'the crashing release is refused');
  assert.equal(await onDroplet(['cat', '/var/plumber/keep/data/model.rds']), 'precious');
  assert.equal(await onDroplet(['sh', '-c', 'ls /var/plumber/keep/releases | wc -l']), '1', 'only the kept release; the failed one is gone');
});

test('plumb logs: 300 lines of 40 KB with escape sequences arrive whole over one connection, shown escaped', async () => {
  const noisy = {
    'plumber.R': `
#* @get /noise
function() {
  for (i in 1:300) message(i, " \\033]0;owned\\007\\033[2J ", strrep("x", 40000))
  "done"
}
`,
  };
  assert.equal((await user.plumb(['deploy', await apiDir(noisy), '--name', 'noisy'])).exitCode, 0);
  // 12 MB through journald: slow on a busy machine.
  assert.equal((await httpGet(`http://${address}/noisy/noise`, 120_000)).status, 200);
  // journald takes the lines asynchronously: ask until the 300th is there.
  let result = await user.plumb(['logs', 'noisy', '-n', '400']);
  for (let i = 0; i < 20 && !/^.*300 \\x1b/m.test(result.stdout); i++) {
    await new Promise((r) => setTimeout(r, 500));
    result = await user.plumb(['logs', 'noisy', '-n', '400']);
  }
  assert.equal(result.exitCode, 0, result.stderr.slice(0, 2000));
  const lines = result.stdout.split('\n').filter((l) => / \d+ \\x1b\]0;owned\\x07\\x1b\[2J x{40000}$/.test(l));
  assert.equal(lines.length, 300);
  assert.ok(!result.stdout.includes('\x1b'), 'no raw escape character reaches the terminal');
});

test('a damaged state.json: the agent keeps running, rebuilds it, and every API still serves and shows', async () => {
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'sum', '--path', '/calc'])).exitCode, 0);
  const release = (await onDroplet(['readlink', '/var/plumber/sum/current'])).replace(/^releases\//, '');
  await onDroplet(['sh', '-c', 'printf "{\\"version\\": 1, \\"apis\\": {" > /var/lib/plumb/state.json']);
  await onDroplet(['systemctl', 'restart', 'plumb-agent']);
  // Ask the agent itself, with a deadline: it answers once it has rebuilt its state.
  type Status = Array<{ error?: unknown; status?: { apis: Array<{ name: string; path: string; release: string }>; events: Array<{ kind: string; detail: string }> } }>;
  const ask = async () => JSON.parse((await user.plumb(['status', '--json'])).stdout) as Status;
  assert.ok(await agentAnswersAgain(user), 'the agent answers plumb again');
  const [droplet] = await ask();
  assert.ok(droplet?.status);
  const sum = droplet?.status.apis.find((a) => a.name === 'sum');
  assert.deepEqual([sum?.path, sum?.release], ['/calc', release], 'the URL path from the last good copy, the release from disk');
  assert.ok(droplet?.status.events.some((e) => e.kind === 'state-rebuilt' && /noisy, sum/.test(e.detail)), JSON.stringify(droplet?.status.events.slice(-3)));
  assert.match(await onDroplet(['sh', '-c', 'ls /var/lib/plumb/']), /state\.json\.damaged-/);
  assert.deepEqual(JSON.parse((await get('/calc/add?a=1&b=2')).body), [3]);
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('v2')), '--name', 'sum'])).exitCode, 0, 'and plumb goes on working');
  assert.deepEqual(JSON.parse((await get('/calc/version')).body), ['v2']);
});

/** A socket to the agent as the controller opens one, with its TLS socket in hand to misbehave with. */
async function rawSession(): Promise<{ ws: WebSocket; tls: import('node:tls').TLSSocket; answers: Array<{ type: string; error?: { code: string; message: string } }> }> {
  const { droplets } = JSON.parse(await readFile(path.join(user.configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: Array<{ uuid: string; fingerprint: string }> };
  const droplet = droplets[0]!;
  const key = await loadSigningKey(path.join(user.configHome, 'plumb'));
  const { ws, tls } = await agentSocket({ address: { host: address, port: AGENT_PORT }, pin: droplet.fingerprint, dropletUuid: droplet.uuid, key });
  ws.on('error', () => {});
  const answers: Array<{ type: string; error?: { code: string; message: string } }> = [];
  ws.on('message', (data) => answers.push(JSON.parse(String(data)) as { type: string }));
  await once(ws, 'open');
  return { ws, tls, answers };
}

const startDeploy = (ws: WebSocket, name: string) => {
  ws.send(JSON.stringify({ type: 'deploy', id: 1, name, path: `/${name}`, forward: false, env: {}, workers: 1, healthPath: null }));
  // The first bytes of a bundle, and then nothing more.
  ws.send(gzipSync(rawTar([{ path: 'plumber.R', body: '#* @get /x\nfunction() 1\n' }])).subarray(0, 20), { binary: true });
};

test('a deploy whose upload stalls fails with a clear error after the idle limit, and the API is free again', async () => {
  const { ws, answers } = await rawSession();
  startDeploy(ws, 'stall');
  const started = Date.now();
  while (!answers.some((a) => a.type === 'error') && Date.now() - started < UPLOAD_IDLE_TIMEOUT_MS + 30_000) await new Promise((r) => setTimeout(r, 250));
  const error = answers.find((a) => a.type === 'error')?.error;
  assert.equal(error?.code, 'BUNDLE_STALLED', JSON.stringify(answers));
  assert.match(error?.message ?? '', /stalled/);
  ws.close();
  const deployed = await user.plumb(['deploy', await apiDir(sumApi('after-stall')), '--name', 'stall'], { timeoutMs: 120_000 });
  assert.equal(deployed.exitCode, 0, deployed.stderr);
  assert.deepEqual(JSON.parse((await get('/stall/version')).body), ['after-stall']);
});

test('a controller that vanishes (no more pongs) is dropped: its log follower on the droplet stops', async () => {
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'vanish'])).exitCode, 0);
  const { ws, tls } = await rawSession();
  ws.send(JSON.stringify({ type: 'logs', id: 1, name: 'vanish', lines: 0, since: null, follow: true }));
  const followers = () => onDroplet(['sh', '-c', 'pgrep -fc "[j]ournalctl .*plumber-vanish.* -f$" || true']);
  for (let i = 0; i < 40 && (await followers()) !== '1'; i++) await new Promise((r) => setTimeout(r, 250));
  assert.equal(await followers(), '1', 'journalctl follows for the controller');
  // Half-open: this end stops reading, so the agent's pings go unanswered.
  tls.pause();
  const deadline = Date.now() + 3 * WS_PING_INTERVAL_MS + 10_000;
  while ((await followers()) !== '0' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await followers(), '0', 'the agent closed the silent socket and cancelled what it ran');
  tls.destroy();
});

test('--keep 1: a release whose workers are still draining keeps its files until they stop, then the next deploy prunes it', async () => {
  const slow = (version: string) => ({ 'plumber.R': `#* @get /slow\nfunction() { Sys.sleep(8); readLines("version.txt") }\n`, 'version.txt': `${version}\n` });
  assert.equal((await user.plumb(['deploy', await apiDir(slow('one')), '--name', 'prune', '--keep', '1'])).exitCode, 0);
  const first = (await onDroplet(['readlink', '/var/plumber/prune/current'])).replace(/^releases\//, '');
  // A request in flight on the first release, which reads a file beside its code as it ends.
  const inFlight = httpGet(`http://${address}/prune/slow`, 60_000);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await user.plumb(['deploy', await apiDir(slow('two')), '--name', 'prune'])).exitCode, 0);
  const answer = await inFlight;
  assert.deepEqual([answer.status, JSON.parse(answer.body)], [200, ['one']], 'the old worker finished reading its own release');
  // Once that worker has drained, the next deploy keeps only the live release.
  assert.equal((await user.plumb(['deploy', await apiDir(slow('three')), '--name', 'prune', '--wait'])).exitCode, 0);
  assert.equal((await user.plumb(['deploy', await apiDir(slow('four')), '--name', 'prune', '--wait'])).exitCode, 0);
  // Old releases go just after a deploy's answer (ops/prune.ts).
  const left = await settled(async () => (await onDroplet(['ls', '/var/plumber/prune/releases'])).split('\n'), (l) => l.length === 1);
  assert.equal(left.length, 1, left.join(' '));
  assert.ok(!left.includes(first));
});
