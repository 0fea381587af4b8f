import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AGENT_PORT } from '@plumb/shared';
import { AgentConnection, enrol } from '@plumb/controller/agent/client';
import { loadOrCreateSigningKey, type SigningKey } from '@plumb/controller/local/keys';
import { tokenFor } from '@plumb/controller/agent/tokens';
import { startLab, type Lab } from '../lab/lab.js';
import { agentAuthCases } from '../cases/agent-auth.cases.js';
import { agentFrameCases } from '../cases/agent-frames.cases.js';
import { clientFor, httpGet, waitAction } from './helpers.js';
import { plumbUser, type PlumbUser } from './plumb.js';

/**
 * `plumb provision`, `droplets` and `destroy`, the real binary against the lab: a droplet with
 * R, plumber, nginx, ufw and an enrolled agent.
 */

interface Provisioned {
  droplet: { name: string; id: number; uuid: string; ipv4: string; fingerprint: string };
  agentVersion: string;
  swap: { path: string; bytes: number; enabled: boolean } | null;
}

let lab: Lab;
let user: PlumbUser;
let first: Provisioned;
let firstProgress: string;
let key: SigningKey;

async function requestCounts(): Promise<Record<string, number>> {
  const response = await fetch(`${lab.controlUrl}/lab/requests`);
  return ((await response.json()) as { counts: Record<string, number> }).counts;
}

async function requestLog(): Promise<Array<{ method: string; path: string; status: number }>> {
  const response = await fetch(`${lab.controlUrl}/lab/requests`);
  return ((await response.json()) as { recent: Array<{ method: string; path: string; status: number }> }).recent;
}

/** A call to the DigitalOcean stand-in's v2 API with the lab's token, as a user's script would make it. */
async function doApi(method: string, apiPath: string, body?: object): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${lab.apiUrl}${apiPath}`, { method, headers: { authorization: `Bearer ${lab.token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
  return { status: response.status, body: await response.json() };
}

/** A fresh ed25519 public key in OpenSSH's one-line form. */
function sshPublicKey(): string {
  const raw = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }).subarray(-32);
  const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from('ssh-ed25519')), field(raw)]).toString('base64')} test@lab`;
}

async function fault(body: object): Promise<void> {
  const response = await fetch(`${lab.controlUrl}/lab/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(response.status, 201, await response.text());
}

before(async () => {
  lab = await startLab();
  user = await plumbUser(lab);
});

after(async () => {
  await lab?.stop();
});

describe('plumb provision', () => {
  before(async () => {
    const result = await user.plumb(['provision', '--name', 'api-1', '--example', '--json']);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    first = JSON.parse(result.stdout) as Provisioned;
    firstProgress = result.stderr;
    key = await loadOrCreateSigningKey(path.join(user.configHome, 'plumb'));
  });

  test('shows each step as plain lines when not on a terminal, and remembers the droplet', async () => {
    for (const step of ['creating droplet api-1', 'waiting for the droplet to be active', 'waiting for the droplet to boot', 'sending the agent to the droplet', 'enrolling the agent', 'waiting for cloud-init to finish']) {
      assert.match(firstProgress, new RegExp(`^\\[\\s*[\\d.]+s\\] ${step}`, 'm'));
    }
    const dropletsJson = JSON.parse(await readFile(path.join(user.configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: unknown[] };
    assert.equal(dropletsJson.droplets.length, 1);
    assert.equal(first.droplet.name, 'api-1');
    assert.match(first.droplet.fingerprint, /^[0-9a-f]{64}$/);
  });

  test('cloud-init finished without errors', async () => {
    const status = await lab.droplet(first.droplet.id).exec(['cloud-init', 'status', '--long']);
    assert.match(status, /^status: done$/m);
    assert.match(status, /^errors: \[\]$/m);
  });

  test('ufw allows exactly 22, 80 and the agent port', async () => {
    const status = await lab.droplet(first.droplet.id).exec(['ufw', 'status']);
    assert.match(status, /Status: active/);
    const ports = [...status.matchAll(/^(\S+)\s+ALLOW\s+Anywhere\s*$/gm)].map((m) => m[1]).sort();
    assert.deepEqual(ports, ['22/tcp', `${AGENT_PORT}/tcp`, '80/tcp'].sort());
  });

  test('--example: the example API answers GET / from R, through nginx', async () => {
    const answer = await httpGet(`http://${first.droplet.ipv4}/`);
    assert.equal(answer.status, 200);
    assert.match(answer.body, /plumber is alive!/);
    const echo = await httpGet(`http://${first.droplet.ipv4}/hello/echo?msg=hi`);
    assert.deepEqual(JSON.parse(echo.body), { msg: ["The message is: 'hi'"] });
  });

  test('other ports are filtered by ufw', async () => {
    const droplet = lab.droplet(first.droplet.id);
    await droplet.exec(['sh', '-c', '(setsid python3 -m http.server 8080 >/dev/null 2>&1 &)']);
    // It answers on the droplet itself (ufw leaves loopback alone)...
    let inside = '';
    for (let i = 0; i < 40 && inside !== '200'; i++) {
      inside = await droplet.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8080/']).catch(() => '');
      if (inside !== '200') await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(inside, '200', 'the listener answers from inside the droplet');
    // ...and from outside the packets are dropped: no answer at all, not a refusal.
    await assert.rejects(httpGet(`http://${first.droplet.ipv4}:8080/`, 1500), /no answer within/);
    await droplet.exec(['pkill', '-f', 'http.server 8080']);
  });

  test('the swap file exists (4 GiB; created, not enabled in the lab)', async () => {
    assert.ok(first.swap);
    assert.equal(first.swap.path, '/swapfile');
    assert.equal(first.swap.bytes, 4 * 1024 ** 3);
    assert.equal(first.swap.enabled, false);
    const mode = await lab.droplet(first.droplet.id).exec(['stat', '-c', '%a %U', '/swapfile']);
    assert.equal(mode, '600 root');
  });

  test('the agent runs as an enabled systemd service, of exactly the controller version', async () => {
    const droplet = lab.droplet(first.droplet.id);
    assert.equal(await droplet.exec(['systemctl', 'is-active', 'plumb-agent']), 'active');
    assert.equal(await droplet.exec(['systemctl', 'is-enabled', 'plumb-agent']), 'enabled');
    const controller = JSON.parse(await readFile(new URL('../../../packages/controller/package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(first.agentVersion, controller.version);
  });

  test('R and plumber load, without recommends', async () => {
    const version = await lab.droplet(first.droplet.id).exec(['Rscript', '-e', 'suppressMessages(library(plumber)); cat(as.character(packageVersion("plumber")))'], { timeoutMs: 60_000 });
    assert.match(version, /^1\.\d+/);
  });

  test('the user plumber exists and the enrolment secret is gone from the agent config', async () => {
    const droplet = lab.droplet(first.droplet.id);
    assert.match(await droplet.exec(['id', 'plumber']), /uid=\d+\(plumber\)/);
    const config = JSON.parse(await droplet.exec(['cat', '/etc/plumb-agent/config.json'])) as Record<string, unknown>;
    assert.equal(config['enrolmentSecret'], undefined);
    assert.equal(await droplet.exec(['stat', '-c', '%a', '/etc/plumb-agent/config.json']), '600');
  });

  test('a second enrolment is refused', async () => {
    await assert.rejects(enrol({ host: first.droplet.ipv4, port: AGENT_PORT }, () => tokenFor(key, first.droplet.uuid), '0'.repeat(32)), /already enrolled/);
  });

  agentAuthCases(() => ({ address: { host: first.droplet.ipv4, port: AGENT_PORT }, dropletUuid: first.droplet.uuid, pin: first.droplet.fingerprint, key }));
  agentFrameCases(() => ({ address: { host: first.droplet.ipv4, port: AGENT_PORT }, dropletUuid: first.droplet.uuid, pin: first.droplet.fingerprint, key }));

  test('the agent comes back after a reboot, with the same pin', async () => {
    const api = clientFor(lab);
    const { action } = (await api.droplet.rebootDroplet({ droplet_id: first.droplet.id })).data;
    assert.equal(await waitAction(api, action.id), 'completed');
    let connection: AgentConnection | undefined;
    for (let i = 0; i < 60 && !connection; i++) {
      connection = await AgentConnection.open({ host: first.droplet.ipv4, port: AGENT_PORT }, first.droplet.fingerprint, await tokenFor(key, first.droplet.uuid)).catch(async () => {
        await new Promise((r) => setTimeout(r, 500));
        return undefined;
      });
    }
    assert.ok(connection, 'the agent answers after the reboot');
    assert.equal(connection.hello.enrolled, true);
    connection.close();
  });
});

describe('plumb provision against a flaky DigitalOcean, twice, and destroy', () => {
  let second: Provisioned;

  let creates: number[];

  before(async () => {
    // Aimed at the create itself: the request that must never be sent twice for one droplet.
    await fault({ status: 429, count: 2, retryAfter: 1, method: 'POST', path: '/v2/droplets' });
    await fault({ status: 503, count: 1, method: 'POST', path: '/v2/droplets' });
    // A key in the account, as a user adds one in the dashboard, for --ssh-key by name.
    const added = await doApi('POST', '/account/keys', { name: 'laptop', public_key: sshPublicKey() });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const before = (await requestLog()).length;
    const result = await user.plumb(['provision', '--name', 'api-2', '--tag', 'team-a', '--ssh-key', 'laptop', '--json']);
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    second = JSON.parse(result.stdout) as Provisioned;
    creates = (await requestLog()).slice(before).filter((r) => r.method === 'POST' && r.path === '/v2/droplets').map((r) => r.status);
  });

  test('429 twice and a 503 on the create still end in exactly one droplet', async () => {
    assert.deepEqual(creates, [429, 429, 503, 202], 'the create got the faults, and was retried until it succeeded once');
    const list = await user.plumb(['droplets', '--json']);
    const rows = JSON.parse(list.stdout) as Array<{ name: string }>;
    assert.equal(rows.filter((r) => r.name === 'api-2').length, 1);
  });

  test('--tag: the droplet carries plumb\'s tag and the extra one, and is listed under it', async () => {
    const { body } = await doApi('GET', '/droplets?tag_name=team-a');
    const droplets = (body as { droplets: Array<{ name: string; tags: string[] }> }).droplets;
    assert.deepEqual(droplets.map((d) => [d.name, [...d.tags].sort()]), [['api-2', ['plumb', 'team-a']]]);
  });

  test('two droplets have different pins', () => {
    assert.notEqual(second.droplet.fingerprint, first.droplet.fingerprint);
    assert.notEqual(second.droplet.uuid, first.droplet.uuid);
  });

  test('destroy removes one, and the other still answers', async () => {
    const destroyed = await user.plumb(['destroy', 'api-1', '--yes']);
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
    assert.match(destroyed.stdout, /destroyed droplet api-1/);
    const list = JSON.parse((await user.plumb(['droplets', '--json'])).stdout) as Array<{ name: string; status: string }>;
    assert.deepEqual(list.map((r) => r.name), ['api-2']);
    const connection = await AgentConnection.open({ host: second.droplet.ipv4, port: AGENT_PORT }, second.droplet.fingerprint, await tokenFor(key, second.droplet.uuid));
    assert.equal(connection.hello.dropletUuid, second.droplet.uuid);
    connection.close();
    // nginx on the other droplet still serves: plumb's own answer for a path no API holds.
    const root = await httpGet(`http://${second.droplet.ipv4}/`);
    assert.deepEqual([root.status, root.body], [404, 'plumb: no API is served at /. Deployed APIs are under their own paths.\n']);
  });

  test('destroy without --yes and without a terminal refuses and deletes nothing', async () => {
    const result = await user.plumb(['destroy', 'api-2']);
    assert.equal(result.exitCode, 2);
    assert.match(result.stderr, /without confirmation/);
    assert.equal(JSON.parse((await user.plumb(['droplets', '--json'])).stdout).length, 1);
  });
});

describe('plumb provision refuses bad input before DigitalOcean is asked', () => {
  test('a bad token ends in one line saying the token was refused, and what to do', async () => {
    const before = await requestCounts();
    const result = await user.plumb(['provision', '--name', 'nope-1'], { env: { DIGITALOCEAN_ACCESS_TOKEN: 'dop_v1_wrong' } });
    assert.equal(result.exitCode, 4);
    const lines = result.stderr.trim().split('\n');
    const [line, hint] = lines.slice(lines.findIndex((l) => l.startsWith('plumb: ')));
    assert.match(line ?? '', /^plumb: DigitalOcean refused the API token/);
    assert.match(hint ?? '', /DIGITALOCEAN_ACCESS_TOKEN/);
    assert.equal((await requestCounts())['POST /v2/droplets'] ?? 0, before['POST /v2/droplets'] ?? 0);
  });

  test('user-data over 64 KiB is refused before any API call', async () => {
    const before = await requestCounts();
    const huge = `http://mirror.example/plumb-agent.tgz?pad=${'x'.repeat(70 * 1024)}`;
    const result = await user.plumb(['provision', '--name', 'nope-2'], { env: { PLUMB_AGENT_URL: huge } });
    assert.equal(result.exitCode, 2);
    assert.match(result.stderr, /64 KiB/);
    assert.deepEqual(await requestCounts(), before);
  });

  test('with --json the error is also on stdout, as JSON with its code', async () => {
    const result = await user.plumb(['provision', '--name', 'bad name!', '--json']);
    assert.equal(result.exitCode, 2);
    const { error } = JSON.parse(result.stdout) as { error: { code: string; message: string } };
    assert.equal(error.code, 'INVALID_INPUT');
    assert.match(error.message, /invalid droplet name/);
  });

  test('a name a plumb droplet already has, an unknown --ssh-key and a bad --tag: one line each, no droplet created', async () => {
    const before = await requestCounts();
    const cases: Array<[string[], RegExp]> = [
      [['--name', 'api-2'], /^plumb: a plumb droplet named "api-2" already exists/],
      [['--name', 'nope-3', '--ssh-key', 'no-such-key'], /^plumb: DigitalOcean has no SSH key "no-such-key"/],
      [['--name', 'nope-4', '--tag', 'bad tag!'], /^plumb: invalid tag "bad tag!"/],
    ];
    for (const [args, message] of cases) {
      const result = await user.plumb(['provision', ...args]);
      assert.equal(result.exitCode, 2, result.stderr);
      assert.match(result.stderr.split('\n').find((l) => l.startsWith('plumb: ')) ?? '', message);
    }
    assert.equal((await requestCounts())['POST /v2/droplets'] ?? 0, before['POST /v2/droplets'] ?? 0);
  });

  test('a bad droplet name is refused with one line', async () => {
    const result = await user.plumb(['provision', '--name', 'bad name!']);
    assert.equal(result.exitCode, 2);
    assert.match(result.stderr, /^plumb: invalid droplet name "bad name!"/);
  });
});

