import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { X509Certificate } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort, startAcmeServer, startAcmeServerOnFreePorts, sweepAcme, type AcmeServer, type AcmeServerOptions } from '../lab/acme.js';

async function labPorts() {
  return {
    acmePort: await freePort(),
    managementPort: await freePort(),
    dnsPort: await freePort(),
    dnsManagementPort: await freePort(),
  };
}

async function labOptions(prefix: string): Promise<AcmeServerOptions> {
  return { stateDir: await mkdtemp(join(tmpdir(), prefix)), bindAddress: '127.0.0.1', ...(await labPorts()) };
}

function getJson(url: string, ca?: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    https.get(url, { agent: false, timeout: 5000, ...(ca === undefined ? {} : { ca }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    }).on('error', reject).on('timeout', function (this: { destroy(e: Error): void }) {
      this.destroy(new Error('timeout'));
    });
  });
}

function peerCertificatePem(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve(new X509Certificate(raw).toString());
    });
    socket.on('error', reject);
  });
}

async function recordedPids(stateDir: string): Promise<number[]> {
  const text = await readFile(join(stateDir, 'pids'), 'utf8');
  return text.trim().split('\n').map((line) => (JSON.parse(line) as { pid: number }).pid);
}

/** Pids among PIDS still running pebble or challtestsrv. */
async function stillRunning(pids: number[]): Promise<number[]> {
  const alive: number[] = [];
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (/^(pebble|pebble-challtestsrv)\0/.test(cmdline)) alive.push(pid);
  }
  return alive;
}

describe('acme: pebble and challtestsrv for the lab', () => {
  let opts: AcmeServerOptions;
  let server: AcmeServer;
  let pids: number[];

  before(async () => {
    // The ports a parallel test file's lab may take between the look and the bind: tried again on new ones.
    ({ server, options: opts } = await startAcmeServerOnFreePorts({ stateDir: await mkdtemp(join(tmpdir(), 'plumb-acme-')), bindAddress: '127.0.0.1' }));
    pids = await recordedPids(opts.stateDir);
  });
  after(async () => {
    await server?.stop();
    await rm(opts.stateDir, { recursive: true, force: true });
  });

  it('serves the ACME directory over TLS that verifies with the listener CA', async () => {
    assert.equal(server.directoryUrl, `https://127.0.0.1:${opts.acmePort}/dir`);
    const dir = await getJson(server.directoryUrl, server.listenerCaPem) as Record<string, unknown>;
    assert.equal(typeof dir.newAccount, 'string');
    assert.equal(typeof dir.newOrder, 'string');
    const meta = dir.meta as Record<string, unknown> | undefined;
    assert.equal(typeof meta?.termsOfService, 'string');
    assert.equal(await readFile(server.listenerCaPath, 'utf8'), server.listenerCaPem);
  });

  it('refuses TLS to a client that does not trust the listener CA', async () => {
    await assert.rejects(getJson(server.directoryUrl), (err: NodeJS.ErrnoException) => {
      assert.match(err.code ?? '', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT/);
      return true;
    });
  });

  it("passes OpenSSL's strict chain checks (what Python 3.13, hence certbot, applies)", async () => {
    const leafPath = join(opts.stateDir, 'served-listener.pem');
    await writeFile(leafPath, await peerCertificatePem(opts.acmePort!, server.listenerCaPem));
    const r = await execa('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', server.listenerCaPath, leafPath], { reject: false });
    assert.equal(r.exitCode, 0, String(r.stderr));
    const leaf = new X509Certificate(await readFile(leafPath));
    assert.match(leaf.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    assert.match(leaf.subjectAltName ?? '', /DNS:acme\.lab/);
  });

  it("resolve() makes challtestsrv's DNS answer the droplet's address, unresolve() takes it back", async () => {
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${opts.dnsPort}`]);
    await server.resolve('api.example.test', '10.213.9.2');
    assert.deepEqual(await resolver.resolve4('api.example.test'), ['10.213.9.2']);
    await assert.rejects(resolver.resolve6('api.example.test'), { code: 'ENODATA' });
    await server.unresolve('api.example.test');
    assert.deepEqual(await resolver.resolve4('api.example.test'), ['127.0.0.1']);
  });

  it('resolve() refuses a name or an address that is not one', async () => {
    await assert.rejects(server.resolve('bad name', '10.213.9.2'), { code: 'ACME_BAD_OPTION' });
    await assert.rejects(server.resolve('api.example.test', '10.213.9'), { code: 'ACME_BAD_OPTION' });
  });

  it("issuingRootPem() returns pebble's issuing root, a CA certificate", async () => {
    const pem = await server.issuingRootPem();
    const root = new X509Certificate(pem);
    assert.equal(root.ca, true);
    assert.notEqual(root.fingerprint256, new X509Certificate(server.listenerCaPem).fingerprint256);
  });

  it('stop() leaves no pebble or challtestsrv it started, and is idempotent', async () => {
    assert.equal(pids.length, 2);
    assert.equal((await stillRunning(pids)).length, 2);
    await server.stop();
    await server.stop();
    assert.deepEqual(await stillRunning(pids), []);
    await assert.rejects(readFile(join(opts.stateDir, 'pids')), { code: 'ENOENT' });
  });
});

describe('acme: start-up and clean-up', () => {
  it("listens by default on the lab's host address, which its certificate names", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'plumb-acme-lab-'));
    const ports = await labPorts();
    // What the lab's network module does; harmless to leave in place.
    await execa('ip', ['addr', 'replace', '10.213.0.1/32', 'dev', 'lo']);
    const server = await startAcmeServer({ stateDir, ...ports });
    try {
      assert.equal(server.directoryUrl, `https://10.213.0.1:${ports.acmePort}/dir`);
      const dir = await getJson(server.directoryUrl, server.listenerCaPem) as Record<string, unknown>;
      assert.equal(typeof dir.newOrder, 'string');
    } finally {
      await server.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('a second server on the same ports fails with the process log, and leaves nothing behind', async () => {
    const opts = await labOptions('plumb-acme-busy-');
    const first = await startAcmeServer(opts);
    const otherDir = await mkdtemp(join(tmpdir(), 'plumb-acme-busy2-'));
    try {
      await assert.rejects(startAcmeServer({ ...opts, stateDir: otherDir }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ACME_NOT_READY');
        assert.match(err.message, /address already in use/);
        return true;
      });
      await assert.rejects(readFile(join(otherDir, 'pids')), { code: 'ENOENT' });
    } finally {
      await first.stop();
      await rm(opts.stateDir, { recursive: true, force: true });
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it('sweepAcme() stops the recorded processes, leaves other pids alone, and is idempotent', async () => {
    const opts = await labOptions('plumb-acme-sweep-');
    const server = await startAcmeServer(opts);
    try {
      const pids = await recordedPids(opts.stateDir);
      // A recorded pid whose command line is not the recorded one (this test) must survive.
      const stranger = JSON.stringify({ pid: process.pid, argv: ['pebble', '-config', 'x'] });
      await writeFile(join(opts.stateDir, 'pids'), (await readFile(join(opts.stateDir, 'pids'), 'utf8')) + stranger + '\n');
      assert.equal(await sweepAcme(opts.stateDir), 2);
      assert.deepEqual(await stillRunning(pids), []);
      assert.equal(await sweepAcme(opts.stateDir), 0);
    } finally {
      await server.stop();
      await rm(opts.stateDir, { recursive: true, force: true });
    }
  });

  it('a SIGKILLed parent takes pebble and challtestsrv with it', async () => {
    const opts = await labOptions('plumb-acme-orphan-');
    const moduleUrl = new URL('../lab/acme.js', import.meta.url).href;
    const script = `const m = await import(process.argv[1]);
await m.startAcmeServer(JSON.parse(process.argv[2]));
console.log('ready');
setInterval(() => {}, 1000);`;
    const parent = execa('node', ['--input-type=module', '-e', script, moduleUrl, JSON.stringify(opts)], {
      reject: false,
      cwd: fileURLToPath(new URL('.', import.meta.url)),
    });
    try {
      await new Promise<void>((resolve, reject) => {
        parent.stdout.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('ready')) resolve();
        });
        void parent.then((r) => reject(new Error(`the parent exited before it was ready: ${String(r.stderr)}`)));
      });
      const pids = await recordedPids(opts.stateDir);
      assert.equal((await stillRunning(pids)).length, 2);
      parent.kill('SIGKILL');
      await parent;
      const deadline = Date.now() + 5000;
      while ((await stillRunning(pids)).length > 0 && Date.now() < deadline) await sleep(50);
      assert.deepEqual(await stillRunning(pids), []);
    } finally {
      parent.kill('SIGKILL');
      await sweepAcme(opts.stateDir);
      await rm(opts.stateDir, { recursive: true, force: true });
    }
  });
});
