import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PLUMB_CLI } from '../e2e/plumb.js';

/**
 * `plumb --version` and `plumb --help` start fast because they read the bundle (dist/plumb.js and
 * its chunks, scripts/bundle-cli.mjs) and no command's work: checked here by running them from a
 * copy of the controller's dist/ with the rest taken out (a module that is loaded but missing
 * fails the run). Their times are in bench/cli-start.ts, not here.
 */

const CONTROLLER = path.resolve(path.dirname(PLUMB_CLI), '..');
let copy: string;

const run = (args: string[], nodeFlags: string[] = []) => {
  const r = spawnSync(process.execPath, [...nodeFlags, path.join(copy, 'dist/plumb.js'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { exitCode: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** Node flags that print, on stderr, every module the run resolves (a loader hook, in its own thread). */
const hook = `data:text/javascript,${encodeURIComponent("export async function resolve(s, c, next) { const r = await next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; }")}`;
const tracing = ['--import', `data:text/javascript,${encodeURIComponent(`import { register } from 'node:module'; register(${JSON.stringify(hook)});`)}`];
const loaded = (stderr: string) => [...new Set(stderr.split('\n').filter((l) => l.startsWith('LOADED file:')).map((l) => l.slice('LOADED '.length)))];

before(async () => {
  // Inside packages/controller, so that the copy finds the same node_modules.
  copy = await mkdtemp(path.join(CONTROLLER, '.startup-test-'));
  await cp(path.join(CONTROLLER, 'package.json'), path.join(copy, 'package.json'));
  await cp(path.join(CONTROLLER, 'dist'), path.join(copy, 'dist'), { recursive: true });
});

after(async () => {
  await rm(copy, { recursive: true, force: true });
});

describe('CLI start-up', () => {
  test('plumb --version needs nothing but dist/plumb.js and its package.json', async () => {
    const { version } = JSON.parse(await readFile(path.join(CONTROLLER, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = run([flag], tracing);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
      assert.deepEqual(loaded(r.stderr).map((m) => path.basename(m)), ['plumb.js']);
    }
  });

  test("plumb --help and a command's --help load no command's work: no agent client, no DigitalOcean client", async () => {
    // dist/cli/ too: the bundle, not tsc's separate files, is what runs.
    for (const dir of ['commands', 'digitalocean', 'cli', 'output']) await rm(path.join(copy, 'dist', dir), { recursive: true, force: true });
    for (const file of ['client.js', 'connect.js']) await rm(path.join(copy, 'dist/agent', file), { force: true });
    const root = run(['--help']);
    assert.equal(root.exitCode, 0, root.stderr);
    assert.match(root.stdout, /Usage: plumb/);
    for (const command of ['deploy', 'provision', 'rollback', 'status', 'logs']) assert.match(root.stdout, new RegExp(`^  ${command}\\b`, 'm'));
    const deploy = run(['deploy', '--help']);
    assert.equal(deploy.exitCode, 0, deploy.stderr);
    assert.match(deploy.stdout, /Usage: plumb deploy/);
    // The same copy fails once a command runs: what --help did not load really is gone.
    const status = run(['status']);
    assert.notEqual(status.exitCode, 0);
    assert.match(status.stderr, /Cannot find module|ERR_MODULE_NOT_FOUND/);
  });

  test("plumb --help and a command's --help load no zod (no schema), and only the bundle besides @plumb/shared/core", () => {
    for (const args of [['--help'], ['deploy', '--help'], ['secrets', 'set', '--help']]) {
      const r = run(args, tracing);
      assert.equal(r.exitCode, 0, r.stderr);
      const modules = loaded(r.stderr);
      assert.deepEqual(modules.filter((m) => /\/node_modules\/zod\//.test(m)), [], `${args.join(' ')} loads zod`);
      const outside = modules.filter((m) => !/\/controller\/[^/]+\/dist\/plumb(-chunk-[A-Z0-9]+)?\.js$/.test(m));
      // @plumb/shared/core (errors, limits, ranges): kept out of the bundle so that its error classes are the ones commands throw.
      assert.ok(outside.length <= 4 && outside.every((m) => m.includes('/shared/dist/')), `${args.join(' ')} loads ${outside.length} modules besides the bundle:\n${outside.join('\n')}`);
      assert.ok(modules.length <= 8, `${args.join(' ')} loads ${modules.length} modules:\n${modules.join('\n')}`);
    }
    // The hook sees what node loads: the whole @plumb/shared (with zod) when asked for it.
    assert.ok(loaded(run(['status'], tracing).stderr).some((m) => /\/node_modules\/zod\//.test(m)), 'a command that runs loads zod, and the hook sees it');
  });
});
