import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { extract, list } from 'tar';
import { ValidationError } from '@plumb/shared';
import { agentPackage } from '@plumb/controller/agent/package';
import { startPackageServer } from '../lab/package-server.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const controllerVersion = (JSON.parse(await readFile(path.join(repo, 'packages/controller/package.json'), 'utf8')) as { version: string }).version;
// curl honours proxy variables; the package server is local.
const localEnv = { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop (the package server answers from this process). */
function run(file: string, args: string[], opts: { cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { ...opts, env: localEnv, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function scratch(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `plumb-${prefix}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const exists = (p: string) => access(p).then(() => true, () => false);

test('build: the agent package and its manifest are built, of the controller version', async () => {
  const pkg = await agentPackage({});
  assert.equal(pkg.name, '@plumb/agent');
  assert.equal(pkg.version, controllerVersion);
  assert.ok(await exists(pkg.tarballPath), pkg.tarballPath);
  assert.ok(await exists(path.join(repo, 'packages/agent/bundle/plumb-agent.mjs')));
  assert.equal(pkg.url, undefined, 'no mirror: plumb sends the package itself');
  assert.equal(pkg.bytes, (await readFile(pkg.tarballPath)).length);
});

test('build: the manifest integrity and sha512 are the tarball digest', async () => {
  const pkg = await agentPackage({});
  const digest = createHash('sha512').update(await readFile(pkg.tarballPath)).digest();
  assert.equal(pkg.integrity, `sha512-${digest.toString('base64')}`);
  assert.equal(pkg.sha512, digest.toString('hex'));
});

test('build: the tarball holds the package.json and the one-file bundle, no node_modules', async () => {
  const pkg = await agentPackage({});
  const entries: string[] = [];
  await list({ file: pkg.tarballPath, onReadEntry: (e) => entries.push(e.path) });
  const required = ['package/package.json', 'package/bundle/plumb-agent.mjs'];
  const allowed = new Set([...required, 'package/README.md', 'package/LICENSE']);
  for (const entry of required) assert.ok(entries.includes(entry), `missing ${entry}`);
  assert.deepEqual(entries.filter((e) => !allowed.has(e)), []);
  assert.ok(!entries.some((e) => e.includes('node_modules')));
});

test('build: the unpacked bundle prints the controller version with no node_modules around it', async (t) => {
  const pkg = await agentPackage({});
  const dir = await scratch(t, 'unpacked');
  await extract({ file: pkg.tarballPath, cwd: dir });
  for (let d = dir; ; d = path.dirname(d)) {
    assert.ok(!(await exists(path.join(d, 'node_modules'))), `${d}/node_modules would hide a missing dependency`);
    if (path.dirname(d) === d) break;
  }
  const packed = JSON.parse(await readFile(path.join(dir, 'package/package.json'), 'utf8')) as { bin: Record<string, string> };
  assert.deepEqual(packed.bin, { 'plumb-agent': 'bundle/plumb-agent.mjs' });
  const result = await run(process.execPath, [path.join(dir, 'package/bundle/plumb-agent.mjs'), '--version']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim(), controllerVersion);
});

test('build: an agent and a controller of different versions fail the build', async (t) => {
  const tree = await scratch(t, 'versions');
  await mkdir(path.join(tree, 'scripts'));
  await copyFile(path.join(repo, 'scripts/pack-agent.mjs'), path.join(tree, 'scripts/pack-agent.mjs'));
  await symlink(path.join(repo, 'node_modules'), path.join(tree, 'node_modules'));
  for (const [name, version] of [['agent', '0.1.0'], ['controller', '0.2.0']] as const) {
    await mkdir(path.join(tree, 'packages', name), { recursive: true });
    await writeFile(path.join(tree, 'packages', name, 'package.json'), JSON.stringify({ name: `@plumb/${name}`, version }));
  }
  const result = await run(process.execPath, [path.join(tree, 'scripts/pack-agent.mjs')]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /@plumb\/agent is version 0\.1\.0 but @plumb\/controller is 0\.2\.0/);
  assert.ok(!(await exists(path.join(tree, 'packages/agent/bundle'))), 'nothing is built');
});

test('config: --agent-url, else PLUMB_AGENT_URL, points the droplet at a mirror of the package', async () => {
  const url = 'http://10.213.0.1:8080/plumb-agent-0.1.0.tgz';
  const flag = 'https://mirror.example/plumb-agent-0.1.0.tgz';
  assert.equal((await agentPackage({ PLUMB_AGENT_URL: url })).url, url);
  assert.equal((await agentPackage({ PLUMB_AGENT_URL: url }, flag)).url, flag);
  assert.equal((await agentPackage({ PLUMB_AGENT_URL: '' })).url, undefined);
  for (const bad of ['ftp://example.com/agent.tgz', 'not a url', 'file:///tmp/agent.tgz']) {
    await assert.rejects(agentPackage({ PLUMB_AGENT_URL: bad }), (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.match(err.message, /^PLUMB_AGENT_URL /);
      return true;
    });
    await assert.rejects(agentPackage({}, bad), (err: unknown) => err instanceof ValidationError && err.message.startsWith('--agent-url '));
  }
});

test('package server: serves only the files of its directory, by exact name', async (t) => {
  const dir = await scratch(t, 'served');
  await writeFile(path.join(dir, 'a.tgz'), 'tarball');
  await mkdir(path.join(dir, 'sub'));
  await writeFile(path.join(dir, 'sub/b.tgz'), 'nested');
  await writeFile(path.join(path.dirname(dir), `${path.basename(dir)}-secret`), 'outside');
  t.after(() => rm(path.join(path.dirname(dir), `${path.basename(dir)}-secret`), { force: true }));
  const server = await startPackageServer({ dir, host: '127.0.0.1' });
  t.after(() => server.close());

  const ok = await fetch(server.url('a.tgz'));
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), 'tarball');
  const base = new URL(server.url('a.tgz')).origin;
  const refused = ['/missing.tgz', '/sub', '/sub/b.tgz', '/sub%2Fb.tgz', '/..%2F' + `${path.basename(dir)}-secret`, '/%2e%2e', '/', '/a.tgz/'];
  for (const p of refused) {
    const res = await fetch(base + p);
    assert.equal(res.status, 404, p);
    await res.body?.cancel();
  }
  assert.equal((await fetch(server.url('a.tgz'), { method: 'DELETE' })).status, 405);
});
