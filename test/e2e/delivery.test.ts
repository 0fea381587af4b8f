import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { AGENT_PORT, DROPLET_BOOT_TIMEOUT_MS } from '@plumb/shared';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { plumbUser, type PlumbUser } from './plumb.js';

/**
 * Issue 18: plumb on DigitalOcean with nothing but a token. The lab runs without its package
 * mirror, so a droplet reaches only what a real one does; plumb sends the agent itself.
 */

let lab: Lab;
let user: PlumbUser;

/** 'open' if a TCP connection to host:port is accepted within `timeoutMs`, else why not. */
function tcp(host: string, port: number, timeoutMs = 3000): Promise<'open' | 'refused' | 'filtered'> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (result: 'open' | 'refused' | 'filtered') => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done('filtered'));
    socket.once('connect', () => done('open'));
    socket.once('error', () => done('refused'));
  });
}

before(async () => {
  lab = await startLab({ packageServer: false });
  user = await plumbUser(lab);
});

after(async () => {
  await lab?.stop();
});

describe('provision with nothing but a token (no PLUMB_AGENT_URL, no package mirror), --close-ssh', () => {
  const name = 'token-only';
  let address = '';
  let id = 0;
  let progress = '';

  before(async () => {
    assert.equal(lab.agentUrl, undefined, 'the lab serves no agent package');
    const result = await user.plumb(['provision', '--name', name, '--close-ssh', '--json'], { env: { PLUMB_AGENT_URL: '' } });
    assert.equal(result.exitCode, 0, `${result.stderr}\n${result.stdout}`);
    const { droplet } = JSON.parse(result.stdout) as { droplet: { id: number; ipv4: string } };
    ({ id, ipv4: address } = droplet);
    progress = result.stderr;
  });

  test('plumb sent the agent; the droplet installed it in versions/<V> behind `current`, and the bootstrap is gone', async () => {
    assert.match(progress, /^\[\s*[\d.]+s\] sending the agent to the droplet/m);
    const droplet = lab.droplet(id);
    assert.equal(await droplet.exec(['readlink', '/opt/plumb-agent/current']), 'versions/0.1.0');
    assert.equal(await droplet.exec(['systemctl', 'is-active', 'plumb-agent']), 'active');
    assert.equal(await droplet.exec(['systemctl', 'show', '-P', 'ExecStart', 'plumb-agent']).then((s) => /\/opt\/plumb-agent\/current\/bundle\/plumb-agent\.mjs/.test(s)), true);
    assert.doesNotMatch(await droplet.exec(['cat', '/etc/plumb-agent/package.json']), /url/, 'no mirror in user-data');
    const bootstrap = await droplet.exec(['sh', '-c', 'systemctl is-active plumb-bootstrap || true']);
    assert.notEqual(bootstrap, 'active');
    const status = await droplet.exec(['cloud-init', 'status', '--long']);
    assert.match(status, /^status: done$/m);
  });

  test('deploy: an API answers through nginx', async () => {
    const dir = await apiDir(sumApi('token-only'));
    const deployed = await user.plumb(['deploy', dir, '--name', 'sum', '--droplet', name]);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    const answer = await httpGet(`http://${address}/sum/add?a=2&b=3`);
    assert.equal(answer.status, 200);
    assert.equal(answer.body, '[5]');
  });

  test('--close-ssh: 22 is not reachable from the host while 80 and the agent port are; ufw holds only those', async () => {
    assert.notEqual(await tcp(address, 22), 'open');
    assert.equal(await tcp(address, 80), 'open');
    assert.equal(await tcp(address, AGENT_PORT), 'open');
    const ufw = await lab.droplet(id).exec(['ufw', 'status']);
    const ports = [...ufw.matchAll(/^(\S+)\s+ALLOW\s+Anywhere\s*$/gm)].map((m) => m[1]).sort();
    assert.deepEqual(ports, [`${AGENT_PORT}/tcp`, '80/tcp'].sort());
  });

  test('plumb firewall open-ssh opens 22 (sshd answers), close-ssh closes it again', async () => {
    const opened = await user.plumb(['firewall', 'open-ssh', '--droplet', name]);
    assert.equal(opened.exitCode, 0, opened.stderr);
    assert.match(opened.stdout, new RegExp(`^${name}: SSH is open; the firewall lets in .*22/tcp`));
    assert.equal(await tcp(address, 22), 'open');
    const again = await user.plumb(['firewall', 'open-ssh', '--droplet', name, '--json']);
    assert.equal((JSON.parse(again.stdout) as { changed: boolean }).changed, false);

    // Off a terminal, closing SSH needs --yes, and without it nothing changes.
    const unconfirmed = await user.plumb(['firewall', 'close-ssh', '--droplet', name]);
    assert.equal(unconfirmed.exitCode, 2);
    assert.match(unconfirmed.stderr, /^plumb: refusing to close SSH on .* without confirmation: stdin is not a terminal\n\s+add --yes/m);
    assert.equal(await tcp(address, 22), 'open');
    const closed = await user.plumb(['firewall', 'close-ssh', '--droplet', name, '--yes']);
    assert.equal(closed.exitCode, 0, closed.stderr);
    assert.match(closed.stdout, /SSH is closed/);
    assert.notEqual(await tcp(address, 22), 'open');
    assert.equal(await tcp(address, 80), 'open');
    assert.equal(await tcp(address, AGENT_PORT), 'open');
  });

  test('plumb firewall with an unknown action is refused with the choices', async () => {
    const result = await user.plumb(['firewall', 'open-everything', '--droplet', name]);
    assert.equal(result.exitCode, 2);
    assert.match(result.stderr, /^plumb: unknown firewall action "open-everything"\n\s+use one of: open-ssh, close-ssh/m);
  });
});

describe('a droplet that cannot reach its package mirror', () => {
  const name = 'cut-off';
  let result: Awaited<ReturnType<PlumbUser['plumb']>>;
  let tookMs = 0;

  before(async () => {
    lab.machines.cutOffNext(1);
    const started = Date.now();
    result = await user.plumb(['provision', '--name', name]);
    tookMs = Date.now() - started;
  });

  test('provision fails within 2 minutes, naming cloud-init and its failing stage, with its output and how to clean up', async (t) => {
    t.diagnostic(`provision reported the failure after ${(tookMs / 1000).toFixed(1)} s`);
    assert.equal(result.exitCode, 1, result.stderr);
    assert.match(result.stderr, /^plumb: failed at "cloud-init modules-final": the agent could not be installed on cut-off: cloud-init cannot download packages from the Debian mirror \(Err:\d+ http:\/\/deb\.debian\.org\/.*Temporary failure resolving/m);
    assert.match(result.stderr, /the droplet is still there \(and billed\): `plumb destroy cut-off` removes it/);
    assert.match(result.stderr, /the end of \/var\/log\/cloud-init-output\.log on the droplet:\n(\s{4}.*\n)+/);
    // The promise is "within 2 minutes of the droplet booting"; the droplet is active in seconds here.
    assert.ok(tookMs < DROPLET_BOOT_TIMEOUT_MS, `reported after ${tookMs} ms`);
  });

  test('the droplet is remembered, so plumb destroy removes it', async () => {
    const destroyed = await user.plumb(['destroy', name, '--yes']);
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
  });
});
