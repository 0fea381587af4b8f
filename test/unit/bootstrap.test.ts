import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { copyFile, lstat, readFile, readlink, writeFile, mkdtemp } from 'node:fs/promises';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BOOTSTRAP_PATHS, PlumbError, type BootstrapStatus } from '@plumb/shared';
import { fingerprintOf } from '@plumb/agent/identity';
import { agentPackage, type AgentPackage } from '@plumb/controller/agent/package';
import { probe, uploadPackage } from '@plumb/controller/agent/bootstrap-client';
import { rootfsReady } from '../lab/droplets/rootfs.js';
import { startPackageServer, type PackageServer } from '../lab/package-server.js';
import { startInDropletImage, type ImageRun } from './droplet-image.js';

/**
 * The droplet's bootstrap (cloud-init/bootstrap.py), run by the droplet image's own python3 and
 * openssl in a chroot, driven by the controller's real client: who may talk to it, and what it
 * installs. (The whole path on a booted droplet: test/e2e/delivery.test.ts.)
 */

const BOOTSTRAP = new URL('../../../cloud-init/bootstrap.py', import.meta.url);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** The bootstrap started in the droplet image with this config and package facts (as user-data would give them). */
async function startBootstrap(address: { host: string; port: number }, secret: string, facts: object): Promise<ImageRun> {
  const config = { dropletUuid: randomUUID(), dropletName: 'boot-1', host: address.host, port: address.port, controllerKeys: [], enrolmentSecret: secret };
  return startInDropletImage(
    {
      '/usr/local/sbin/plumb-bootstrap': await readFile(BOOTSTRAP, 'utf8'),
      '/etc/plumb-agent/config.json': JSON.stringify(config),
      '/etc/plumb-agent/package.json': JSON.stringify(facts),
    },
    ['python3', '/usr/local/sbin/plumb-bootstrap'],
    300_000,
  );
}

/** The bootstrap's status once it answers, and once `until` holds for it. */
async function firstAnswer(address: { host: string; port: number }, secret: string, until: (s: BootstrapStatus) => boolean = () => true): Promise<BootstrapStatus> {
  let last = 'nothing';
  for (let tries = 0; tries < 150; tries++) {
    const answer = await probe(address, secret);
    if (answer.kind === 'bootstrap' && until(answer.status)) return answer.status;
    last = answer.kind === 'bootstrap' ? answer.status.stage : answer.kind;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the bootstrap did not get there (last: ${last})`);
}

const refusedWith = (code: string, message: RegExp) => (err: unknown) => err instanceof PlumbError && err.code === code && message.test(err.message);

describe('the bootstrap, in the Debian 13 droplet image', { skip: rootfsReady() ? false : 'the lab root filesystem is not built (npm run setup)' }, () => {
  const secret = randomBytes(16).toString('hex');
  let run: ImageRun;
  let pkg: AgentPackage;
  let address: { host: string; port: number };
  let fingerprint = '';

  before(async () => {
    pkg = await agentPackage({});
    address = { host: '127.0.0.1', port: await freePort() };
    run = await startBootstrap(address, secret, { version: pkg.version, sha512: pkg.sha512, bytes: pkg.bytes });
    fingerprint = (await firstAnswer(address, secret)).fingerprint;
  });

  after(async () => {
    await run?.done();
  });

  test("it answers the holder of the secret with cloud-init's progress and a proof for the certificate it serves: the agent's own", async () => {
    const answer = await probe(address, secret);
    assert.equal(answer.kind, 'bootstrap');
    assert.equal(answer.kind === 'bootstrap' && answer.status.stage, 'waiting-for-package');
    // The agent (packages/agent/src/identity.ts) finds these files and keeps them: the pin never changes.
    const cert = await readFile(path.join(run.upper, 'var/lib/plumb/tls/agent.crt'), 'utf8');
    assert.equal(fingerprintOf(cert), fingerprint);
    assert.equal((await lstat(path.join(run.upper, 'var/lib/plumb/tls'))).mode & 0o777, 0o700);
  });

  test('without the enrolment secret it answers nothing but 401', async () => {
    await assert.rejects(probe(address, randomBytes(16).toString('hex')), refusedWith('BOOTSTRAP_REFUSED', /refused plumb's proof/));
    await assert.rejects(uploadPackage(address, fingerprint, randomBytes(16).toString('hex'), pkg), refusedWith('BOOTSTRAP_REFUSED', /refused/));
  });

  test('an HTTP/1.0 upload that claims `Expect: 100-continue` without the proof is refused before its body (401)', async () => {
    // Python calls its 100-continue check only for HTTP/1.1: an HTTP/1.0 request with the header must not skip it.
    const socket = tls.connect({ host: address.host, port: address.port, rejectUnauthorized: false });
    await once(socket, 'secureConnect');
    socket.write(`PUT ${BOOTSTRAP_PATHS.package} HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: ${pkg.bytes}\r\n\r\n`);
    let head = '';
    socket.setEncoding('utf8');
    for await (const chunk of socket) {
      head += chunk as string;
      if (head.includes('\r\n')) break;
    }
    socket.destroy();
    assert.match(head, /^HTTP\/1\.[01] 401 /);
  });

  test('a package of another size, or with another sha512, is refused and nothing is installed', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'plumb-tampered-'));
    const bytes = await readFile(pkg.tarballPath);
    const short = path.join(dir, 'short.tgz');
    await writeFile(short, bytes.subarray(1));
    await assert.rejects(uploadPackage(address, fingerprint, secret, { ...pkg, tarballPath: short, bytes: bytes.length - 1 }), refusedWith('AGENT_PACKAGE_REFUSED', /must be \d+ bytes/));
    const middle = bytes.length >> 1;
    bytes.writeUInt8(bytes.readUInt8(middle) ^ 0xff, middle);
    const tampered = path.join(dir, 'tampered.tgz');
    await writeFile(tampered, bytes);
    await assert.rejects(uploadPackage(address, fingerprint, secret, { ...pkg, tarballPath: tampered }), refusedWith('AGENT_PACKAGE_REFUSED', /does not match the sha512 in user-data/));
    await assert.rejects(lstat(path.join(run.upper, 'opt/plumb-agent/current')), /ENOENT/);
    await assert.rejects(lstat(path.join(run.upper, `opt/plumb-agent/versions/${pkg.version}`)), /ENOENT/);
  });

  test('the package plumb built is installed in versions/<V> behind the `current` symlink, then it waits for node', async () => {
    const status = await uploadPackage(address, fingerprint, secret, pkg);
    assert.equal(status.stage, 'waiting-for-node');
    assert.equal(await readlink(path.join(run.upper, 'opt/plumb-agent/current')), `versions/${pkg.version}`);
    assert.equal(await readlink(path.join(run.upper, 'usr/local/bin/plumb-agent')), '/opt/plumb-agent/current/bundle/plumb-agent.mjs');
    const bundle = await lstat(path.join(run.upper, `opt/plumb-agent/versions/${pkg.version}/bundle/plumb-agent.mjs`));
    assert.ok(bundle.isFile() && bundle.size > 0);
  });
});

describe('the bootstrap with --agent-url (a mirror), in the Debian 13 droplet image', { skip: rootfsReady() ? false : 'the lab root filesystem is not built (npm run setup)' }, () => {
  const secret = randomBytes(16).toString('hex');
  const runs: ImageRun[] = [];
  let mirror: PackageServer;
  let pkg: AgentPackage;

  before(async () => {
    pkg = await agentPackage({});
    const dir = await mkdtemp(path.join(tmpdir(), 'plumb-mirror-'));
    await copyFile(pkg.tarballPath, path.join(dir, 'good.tgz'));
    const bytes = await readFile(pkg.tarballPath);
    bytes.writeUInt8(bytes.readUInt8(bytes.length >> 1) ^ 0xff, bytes.length >> 1);
    await writeFile(path.join(dir, 'tampered.tgz'), bytes);
    mirror = await startPackageServer({ dir, host: '127.0.0.1' });
  });

  after(async () => {
    for (const run of runs) await run.done();
    await mirror?.close();
  });

  const start = async (file: string) => {
    const address = { host: '127.0.0.1', port: await freePort() };
    const run = await startBootstrap(address, secret, { version: pkg.version, sha512: pkg.sha512, bytes: pkg.bytes, url: mirror.url(file) });
    runs.push(run);
    return { address, run };
  };

  test('it downloads the package from the mirror itself and installs it', async () => {
    const { address, run } = await start('good.tgz');
    const status = await firstAnswer(address, secret, (s) => s.stage === 'waiting-for-node');
    assert.equal(status.error, null);
    assert.equal(await readlink(path.join(run.upper, 'opt/plumb-agent/current')), `versions/${pkg.version}`);
  });

  test('a mirror serving another package is refused by its sha512, and the bootstrap says so', async () => {
    const { address, run } = await start('tampered.tgz');
    const status = await firstAnswer(address, secret, (s) => s.stage === 'failed');
    assert.match(status.error ?? '', /tampered\.tgz: the package does not match the sha512 in user-data/);
    await assert.rejects(lstat(path.join(run.upper, 'opt/plumb-agent/current')), /ENOENT/);
  });
});
