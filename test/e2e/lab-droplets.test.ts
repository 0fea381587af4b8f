import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startLab, type Lab } from '../lab/lab.js';
import { memoryLimit } from '../lab/droplets/cgroup.js';
import { aptArchiveDir } from '../lab/paths.js';
import { clientFor, httpGet, leftovers, waitAction, waitActive, type DoClient } from './helpers.js';

/**
 * The lab's droplets, driven through dots-wrapper exactly as plumb drives DigitalOcean: they boot
 * a real Debian 13 with systemd and cloud-init, serve on their own address, filter with ufw,
 * reboot, and leave nothing behind when deleted.
 */

const USER_DATA = `#cloud-config
locale: C.UTF-8
package_update: true
packages: [nginx, ufw]
write_files:
  - path: /var/lib/lab-test/marker
    content: written by cloud-init
`;

let lab: Lab;
let api: DoClient;

before(async () => {
  lab = await startLab({ acme: true });
  api = clientFor(lab);
});

after(async () => {
  await lab?.stop();
});

test('`npx @plumb/lab status --json`, run from the repository, shows this lab up at its API URL, and its token only with --show-token', async () => {
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  // --offline: the workspace package must be found in the clone, never fetched from a registry.
  const status = async (...flags: string[]) => (await promisify(execFile)('npx', ['--offline', '@plumb/lab', 'status', '--json', ...flags], { cwd: repo })).stdout;
  const stdout = await status();
  const { instances } = JSON.parse(stdout) as { instances: { instance: string; apiUrl: string; running: boolean }[] };
  assert.deepEqual(
    instances.filter((i) => i.instance === lab.instance).map(({ apiUrl, running }) => ({ apiUrl, running })),
    [{ apiUrl: lab.apiUrl, running: true }],
  );
  assert.ok(!stdout.includes(lab.token), 'status --json prints the lab token');
  const shown = JSON.parse(await status('--show-token')) as { instances: { instance: string; token?: string }[] };
  assert.equal(shown.instances.find((i) => i.instance === lab.instance)?.token, lab.token);
});

describe('a droplet made through the DigitalOcean stand-in', () => {
  let id: number;
  let address: string;

  let twin: number;

  before(async () => {
    // nginx's package is downloaded again, so this run shows it reaching the shared archive.
    for (const deb of await readdir(aptArchiveDir()).catch(() => [] as string[])) if (/^nginx_.*\.deb$/.test(deb)) await rm(path.join(aptArchiveDir(), deb));
    // Two droplets at once, as `plumb provision --count 2` or two test suites make them: each
    // installs packages at the same moment from the shared archive.
    const [created, other] = await Promise.all(
      ['web-1', 'web-2'].map((name) => api.droplet.createDroplet({ name, region: 'nyc3', size: 's-1vcpu-1gb', image: 'debian-13-x64', user_data: USER_DATA, tags: ['lab-test'] })),
    );
    assert.equal(created?.data.droplet.status, 'new');
    id = created!.data.droplet.id;
    twin = other!.data.droplet.id;
    ({ address } = await waitActive(api, id));
  });

  test('turns active with a public address, and cloud-init finishes without errors', async () => {
    const status = await lab.droplet(id).exec(['cloud-init', 'status', '--wait', '--long'], { timeoutMs: 600_000 });
    assert.match(status, /(^|\.)status: done$/m);
    assert.match(status, /^errors: \[\]$/m);
    assert.equal(await lab.droplet(id).exec(['cat', '/var/lib/lab-test/marker']), 'written by cloud-init');
    assert.equal(await lab.droplet(id).exec(['hostname']), 'web-1');
  });

  test('two droplets booting at once both install their packages; what they download reaches the shared archive', async () => {
    await waitActive(api, twin);
    const status = await lab.droplet(twin).exec(['cloud-init', 'status', '--wait', '--long'], { timeoutMs: 600_000 });
    assert.match(status, /(^|\.)status: done$/m);
    assert.match(status, /^errors: \[\]$/m);
    assert.equal(await lab.droplet(twin).exec(['sh', '-c', 'command -v nginx']), '/usr/sbin/nginx');
    assert.equal((await api.droplet.deleteDroplet({ droplet_id: twin })).status, 204);
    const archive = await readdir(aptArchiveDir());
    assert.ok(archive.some((f) => /^nginx_.*\.deb$/.test(f)), 'packages land in the apt archive droplets share');
  });

  test('serves nginx on its own address, seen from the host', async () => {
    const answer = await httpGet(`http://${address}/`);
    assert.equal(answer.status, 200);
    assert.match(answer.body, /Welcome to nginx/);
  });

  test('reaches the lab ACME server, trusting the CA the lab exposes, and test domains resolve to it', async () => {
    const acme = lab.acme;
    assert.ok(acme);
    await mkdir(path.join(lab.droplet(id).rootDir, 'usr/local/share/lab'), { recursive: true });
    await copyFile(acme.listenerCaPath, path.join(lab.droplet(id).rootDir, 'usr/local/share/lab/acme-ca.pem'));
    const directory = JSON.parse(await lab.droplet(id).exec(['curl', '-sf', '--cacert', '/usr/local/share/lab/acme-ca.pem', acme.directoryUrl])) as Record<string, unknown>;
    assert.equal(typeof directory['newOrder'], 'string');
    await assert.rejects(lab.droplet(id).exec(['curl', '-sf', acme.directoryUrl]), /exited 60/, 'without the lab CA the certificate is not trusted');
    await acme.resolve('web-1.lab.test', address);
    const resolver = new Resolver();
    resolver.setServers([acme.dnsServer]);
    assert.deepEqual(await resolver.resolve4('web-1.lab.test'), [address]);
  });

  test('runs under the memory its size has (s-1vcpu-1gb: 1 GiB)', async () => {
    assert.equal(await memoryLimit(`lab-${lab.instance}-${id}`), 1024 ** 3);
  });

  test('ufw inside really filters: a denied port stops answering the host', async () => {
    const droplet = lab.droplet(id);
    await droplet.exec(['ufw', 'allow', '22/tcp']);
    await droplet.exec(['ufw', 'allow', '80/tcp']);
    await droplet.exec(['ufw', '--force', 'enable']);
    assert.equal((await httpGet(`http://${address}/`)).status, 200);
    await droplet.exec(['ufw', 'delete', 'allow', '80/tcp']);
    await assert.rejects(httpGet(`http://${address}/`, 2000), /no answer|ECONNREFUSED|ETIMEDOUT/);
    await droplet.exec(['ufw', 'allow', '80/tcp']);
    assert.equal((await httpGet(`http://${address}/`)).status, 200);
  });

  test('a reboot action brings it back on the same address with systemd running', async () => {
    const initBefore = await lab.droplet(id).init();
    const { action } = (await api.droplet.rebootDroplet({ droplet_id: id })).data;
    assert.equal(action.status, 'in-progress');
    assert.equal(await waitAction(api, action.id), 'completed');
    const again = await waitActive(api, id);
    assert.equal(again.address, address);
    const state = await lab.droplet(id).exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: 120_000 }).catch((e: Error) => e.message);
    assert.match(state, /running/);
    // A container shares the host's kernel and boot id; a new init process is what shows it booted again.
    assert.notEqual(await lab.droplet(id).init(), initBefore);
    assert.equal((await httpGet(`http://${address}/`)).status, 200, 'nginx is enabled at boot and ufw kept port 80 open');
    assert.equal(await lab.droplet(id).exec(['cat', '/var/lib/lab-test/marker']), 'written by cloud-init');
  });

  test('power_off turns it off and power_on brings it back', async () => {
    const off = (await api.droplet.powerOffDroplet({ droplet_id: id })).data.action;
    assert.equal(await waitAction(api, off.id), 'completed');
    assert.equal((await api.droplet.getDroplet({ droplet_id: id })).data.droplet.status, 'off');
    await assert.rejects(httpGet(`http://${address}/`, 1500));
    const on = (await api.droplet.powerOnDroplet({ droplet_id: id })).data.action;
    assert.equal(await waitAction(api, on.id), 'completed');
    assert.equal((await waitActive(api, id)).address, address);
  });

  test('deleting it leaves nothing behind on the host', async () => {
    const droplet = lab.droplet(id);
    const { index } = droplet.record;
    const { dir } = droplet.record;
    const response = await api.droplet.deleteDroplet({ droplet_id: id });
    assert.equal(response.status, 204);
    assert.deepEqual(await leftovers(index, dir), []);
    await assert.rejects(api.droplet.getDroplet({ droplet_id: id }), (err: { response?: { status: number } }) => err.response?.status === 404);
  });
});
