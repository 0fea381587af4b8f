import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, link, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { configDir } from '@plumb/controller/local/config';
import { PLUMB_CLI } from '../e2e/plumb.js';

/**
 * The `plumb` command is one bundle (dist/plumb-main.js and chunks beside it, scripts/bundle-cli.mjs)
 * that dist/plumb.js runs, with a V8 code cache: a command reads a few files, not the ~200 tsc
 * writes, and `--help` reads no command's work. Checked here by running it from a copy of the bundle
 * alone, away from the repository and its node_modules, with a loader hook that prints every ES
 * module node resolves and NODE_DEBUG=plumb-bundle, with which dist/plumb.js prints every chunk it
 * runs (and whether from the code cache) and every module required from outside the bundle.
 * dist/plumb-bundle.json (the build's record of which sources each output file holds) says what a
 * loaded file contains. The times are in bench/cli-start.ts and docs/benchmarks.md, not here.
 */

const CONTROLLER = path.resolve(path.dirname(PLUMB_CLI), '..');
/** Output file (relative to dist/) -> the sources in it (relative to the repository). */
let contents: Record<string, string[]>;
let copy: string;
let config: string;

const run = (args: string[], nodeFlags: string[] = [], env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [...nodeFlags, path.join(copy, 'dist/plumb.js'), ...args], {
    encoding: 'utf8',
    cwd: copy,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: config, XDG_CONFIG_HOME: config, DIGITALOCEAN_TOKEN: '', NODE_DEBUG: 'plumb-bundle', ...env },
  });
  return { exitCode: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** Node flags that print, on stderr, every module the run resolves (a loader hook, in its own thread). */
const hook = `data:text/javascript,${encodeURIComponent("export async function resolve(s, c, next) { const r = await next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; }")}`;
const tracing = ['--import', `data:text/javascript,${encodeURIComponent(`import { register } from 'node:module'; register(${JSON.stringify(hook)});`)}`];
/** The files a run loaded, relative to the copy: ES modules node resolved, and the chunks dist/plumb.js ran. */
const loaded = (stderr: string) => [
  ...new Set([
    ...stderr
      .split('\n')
      .filter((l) => l.startsWith('LOADED file:'))
      .map((l) => path.relative(copy, new URL(l.slice('LOADED '.length)).pathname)),
    ...[...stderr.matchAll(/^PLUMB-BUNDLE \d+: run (\S+)/gm)].map((m) => `dist/${m[1]}`),
  ]),
];
/** How each chunk of a run was compiled: chunk -> "compiled", "from the code cache" or "cache refused by V8". */
const compiledHow = (stderr: string) => Object.fromEntries([...stderr.matchAll(/^PLUMB-BUNDLE \d+: run (\S+) \((.*)\)$/gm)].map((m) => [m[1]!, m[2]!]));
/** What a run required from outside the bundle, node's built-ins aside. */
const requiredOutside = (stderr: string) => [...stderr.matchAll(/^PLUMB-BUNDLE \d+: require (\S+)/gm)].map((m) => m[1]!);
/** ws's optional native speed-ups (left out of the bundle: ws runs without them, try/require). */
const OPTIONAL_NATIVE = ['bufferutil', 'utf-8-validate'];
/** The sources that the loaded output files hold. */
const sourcesIn = (files: string[]) => files.flatMap((f) => contents[path.relative('dist', f)] ?? [`(not an output of the bundle: ${f})`]);

const COMMANDS_WORK = [/^packages\/controller\/dist\/commands\//, /^packages\/controller\/dist\/digitalocean\//, /^packages\/controller\/dist\/agent\/(client|connect)\.js$/];
const ZOD = /(^|\/)node_modules\/zod\//;

before(async () => {
  contents = JSON.parse(await readFile(path.join(CONTROLLER, 'dist/plumb-bundle.json'), 'utf8')) as Record<string, string[]>;
  // Away from the repository: no node_modules above it to fall back on.
  copy = await mkdtemp(path.join(os.tmpdir(), 'plumb-startup-'));
  config = path.join(copy, 'home');
  await mkdir(path.join(copy, 'dist'), { recursive: true });
  await mkdir(config);
  await cp(path.join(CONTROLLER, 'package.json'), path.join(copy, 'package.json'));
  for (const file of Object.keys(contents)) await cp(path.join(CONTROLLER, 'dist', file), path.join(copy, 'dist', file));
});

after(async () => {
  await rm(copy, { recursive: true, force: true });
});

describe('CLI start-up', () => {
  test('the bundle holds the whole command: its chunks, @plumb/shared and the npm packages it uses', () => {
    const sources = Object.values(contents).flat();
    for (const source of ['packages/controller/dist/commands/deploy.js', 'packages/controller/dist/commands/status.js', 'packages/shared/dist/protocol.js']) {
      assert.ok(sources.includes(source), `${source} is not in the bundle`);
    }
    for (const pkg of ['zod', 'ws', 'tar', 'commander']) assert.ok(sources.some((s) => s.includes(`node_modules/${pkg}/`)), `${pkg} is not in the bundle`);
  });

  test('plumb --version needs nothing but dist/plumb.js and its package.json', async () => {
    const { version } = JSON.parse(await readFile(path.join(CONTROLLER, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = run([flag], tracing);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
      assert.deepEqual(loaded(r.stderr), ['dist/plumb.js']);
    }
  });

  test("plumb --help and a command's --help load a few files of the bundle and no command's work: no agent or DigitalOcean client, no zod", () => {
    for (const args of [['--help'], ['deploy', '--help'], ['secrets', 'set', '--help']]) {
      const r = run(args, tracing);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Usage: plumb${args.length > 1 ? ` ${args.slice(0, -1).join(' ')}` : ''}`));
      const files = loaded(r.stderr);
      assert.ok(files.length <= 8, `${args.join(' ')} loads ${files.length} files:\n${files.join('\n')}`);
      const sources = sourcesIn(files);
      assert.deepEqual(sources.filter((s) => s.startsWith('(not')), [], `${args.join(' ')} loads files outside the bundle`);
      assert.deepEqual(requiredOutside(r.stderr), [], `${args.join(' ')} requires modules from outside the bundle`);
      assert.deepEqual(sources.filter((s) => ZOD.test(s) || COMMANDS_WORK.some((w) => w.test(s))), [], `${args.join(' ')} loads a command's work`);
    }
  });

  test('a command that runs loads its work from the bundle alone, zod and the agent client included, and nothing from node_modules', () => {
    const r = run(['status'], tracing);
    // No droplet is known in the empty home: status says so, after its work was loaded.
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /no droplets \(create one with `plumb provision`\)/);
    const files = loaded(r.stderr);
    assert.ok(files.every((f) => /^dist\/plumb(-main|-chunk-[A-Z0-9]+)?\.js$/.test(f)), `status loads files outside the bundle:\n${files.join('\n')}`);
    assert.deepEqual(requiredOutside(r.stderr).filter((m) => !OPTIONAL_NATIVE.includes(m)), [], 'status requires modules from outside the bundle');
    const sources = sourcesIn(files);
    for (const wanted of ['packages/controller/dist/commands/status.js', 'packages/controller/dist/agent/client.js']) assert.ok(sources.includes(wanted), `status did not load ${wanted}`);
    assert.ok(sources.some((s) => ZOD.test(s)), 'status did not load zod');
  });

  test("--help still answers with every chunk of the commands' work deleted, and a command that runs then fails", async () => {
    const commandChunks = Object.entries(contents)
      .filter(([file, sources]) => file !== 'plumb.js' && sources.some((s) => COMMANDS_WORK.some((w) => w.test(s))))
      .map(([file]) => file);
    assert.ok(commandChunks.length > 0);
    for (const file of commandChunks) await rm(path.join(copy, 'dist', file));
    const root = run(['--help']);
    assert.equal(root.exitCode, 0, root.stderr);
    for (const command of ['deploy', 'provision', 'rollback', 'status', 'logs']) assert.match(root.stdout, new RegExp(`^  ${command}\\b`, 'm'));
    const status = run(['status']);
    assert.notEqual(status.exitCode, 0);
    assert.match(status.stderr, /ENOENT: no such file or directory, open '.*plumb-chunk-/);
    // Put back for any test after this one.
    for (const file of commandChunks) await cp(path.join(CONTROLLER, 'dist', file), path.join(copy, 'dist', file));
    assert.deepEqual((await readdir(path.join(copy, 'dist'))).filter((f) => f.endsWith('.js')).sort(), Object.keys(contents).sort());
  });

  /** The cache's directory under an XDG cache home: by node's version, V8's and the architecture. */
  const cacheDirIn = (cacheHome: string) => path.join(cacheHome, 'plumb/code-cache', `${process.version}-v8-${process.versions.v8}-${process.arch}`);
  /** How `plumb status` compiled each chunk, with these variables. */
  const statusWith = (env: Record<string, string>) => {
    const r = run(['status'], [], env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /no droplets/);
    return compiledHow(r.stderr);
  };
  const allCompiled = (how: Record<string, string>) => Object.values(how).length > 0 && Object.values(how).every((h) => h === 'compiled');
  const DAY_MS = 24 * 3600 * 1000;
  const aged = async (file: string, ms: number) => utimes(file, new Date(Date.now() - ms), new Date(Date.now() - ms));

  test('the code cache: written by the first run, used by the next; one that is damaged is not used; old files of other builds go, recent ones stay', async () => {
    const cacheHome = path.join(copy, 'cache');
    const cacheDir = cacheDirIn(cacheHome);
    const status = () => statusWith({ XDG_CACHE_HOME: cacheHome });
    const first = status();
    assert.ok(Object.keys(first).length >= 5, JSON.stringify(first));
    assert.ok(allCompiled(first), JSON.stringify(first));
    const written = (await readdir(cacheDir)).sort();
    assert.deepEqual(written.map((f) => f.replace(/\.[0-9a-f]{32}$/, '')), Object.keys(first).sort());
    assert.equal((await stat(cacheDir)).mode & 0o777, 0o700);
    // Named by the text compiled (the chunk in its wrapper), not by the chunk's file alone.
    const main = written.find((f) => f.startsWith('plumb-main.js.'))!;
    const fileHash = createHash('sha256').update(await readFile(path.join(copy, 'dist/plumb-main.js'), 'utf8')).digest('hex').slice(0, 32);
    assert.notEqual(main, `plumb-main.js.${fileHash}`);

    const second = status();
    assert.deepEqual(Object.keys(second).sort(), Object.keys(first).sort());
    assert.ok(Object.values(second).every((how) => how === 'from the code cache'), JSON.stringify(second));

    // A byte changed in one file's data: ignored (compiled again) and written again whole.
    const damage = async () => {
      const bytes = await readFile(path.join(cacheDir, main));
      bytes[bytes.length >> 1]! ^= 0xff;
      await writeFile(path.join(cacheDir, main), bytes);
      return bytes;
    };
    const bytes = await damage();
    // Another build's cache of the same chunk (another install used in turns with this one) stays
    // while it is recent; a temporary file left by a killed run stays an hour.
    const otherBuild = `plumb-main.js.${'0'.repeat(32)}`;
    const leftover = `plumb-main.js.${'1'.repeat(32)}.12345.tmp`;
    await writeFile(path.join(cacheDir, otherBuild), bytes);
    await writeFile(path.join(cacheDir, leftover), bytes);
    const third = status();
    assert.equal(third['plumb-main.js'], 'compiled');
    assert.deepEqual((await readdir(cacheDir)).sort(), [...written, otherBuild, leftover].sort());
    assert.equal(status()['plumb-main.js'], 'from the code cache');

    // Older than a day (the other build's) and an hour (the temporary file): removed by the next run that writes.
    await aged(path.join(cacheDir, otherBuild), DAY_MS + 60_000);
    await aged(path.join(cacheDir, leftover), 3600_000 + 60_000);
    await damage();
    assert.equal(status()['plumb-main.js'], 'compiled');
    assert.deepEqual((await readdir(cacheDir)).sort(), written);
    assert.deepEqual(status(), second);
  });

  test("other nodes' cache directories unused for a week go when a run writes its cache, not when it found it; one read lately stays", async () => {
    const cacheHome = path.join(copy, 'cache-nodes');
    const cacheDir = cacheDirIn(cacheHome);
    const status = () => statusWith({ XDG_CACHE_HOME: cacheHome });
    assert.ok(allCompiled(status()));
    const codeCache = path.dirname(cacheDir);
    const WEEK_MS = 7 * DAY_MS;
    const otherNode = async (name: string, fileAgeMs: { atime: number; mtime: number }) => {
      const dir = path.join(codeCache, name);
      await mkdir(dir, { mode: 0o700 });
      await writeFile(path.join(dir, `plumb-main.js.${'2'.repeat(32)}`), 'old');
      await utimes(path.join(dir, `plumb-main.js.${'2'.repeat(32)}`), new Date(Date.now() - fileAgeMs.atime), new Date(Date.now() - fileAgeMs.mtime));
      await aged(dir, fileAgeMs.mtime);
      return name;
    };
    const upgraded = await otherNode('v18.20.0-v8-10.2.154.26-node.36-x64', { atime: WEEK_MS + DAY_MS, mtime: WEEK_MS + DAY_MS });
    const inTurns = await otherNode('v22.11.0-v8-12.4.254.21-node.21-x64', { atime: DAY_MS, mtime: 30 * DAY_MS });
    const notNodes = path.join(codeCache, 'notes');
    await mkdir(notNodes);
    await aged(notNodes, 30 * DAY_MS);
    const listed = async () => (await readdir(codeCache)).sort();

    assert.ok(Object.values(status()).every((how) => how === 'from the code cache'));
    assert.deepEqual(await listed(), [path.basename(cacheDir), 'notes', upgraded, inTurns].sort(), 'a run that found its cache removes nothing');
    const main = (await readdir(cacheDir)).find((f) => f.startsWith('plumb-main.js.'))!;
    await rm(path.join(cacheDir, main));
    assert.equal(status()['plumb-main.js'], 'compiled');
    assert.deepEqual(await listed(), [path.basename(cacheDir), 'notes', inTurns].sort());
  });

  test('the code cache is used only where no one else can change it: directories above it, and each file (owner, mode, links)', async () => {
    const cacheHome = path.join(copy, 'cache-owners');
    const cacheDir = cacheDirIn(cacheHome);
    const status = () => statusWith({ XDG_CACHE_HOME: cacheHome });
    assert.ok(allCompiled(status()));
    assert.ok(!allCompiled(status()), 'the cache was not used at all');
    const main = path.join(cacheDir, (await readdir(cacheDir)).find((f) => f.startsWith('plumb-main.js.'))!);
    const usedAfter = async (change: () => Promise<unknown>, undo: () => Promise<unknown>) => {
      await change();
      try {
        return status()['plumb-main.js'] === 'from the code cache';
      } finally {
        await undo();
      }
    };
    // Every directory from the cache home down: writable by others, or another user's.
    for (const dir of [cacheDir, path.join(cacheHome, 'plumb'), cacheHome]) {
      assert.equal(await usedAfter(() => chmod(dir, 0o777), () => chmod(dir, 0o700)), false, `${dir} writable by all`);
      assert.equal(await usedAfter(() => chmod(dir, 0o770), () => chmod(dir, 0o700)), false, `${dir} writable by its group`);
      assert.equal(await usedAfter(() => chown(dir, 65534, 65534), () => chown(dir, 0, 0)), false, `${dir} another user's`);
    }
    // The file: another user's, writable by others, or with a second link (a name someone else may hold).
    assert.equal(await usedAfter(() => chown(main, 65534, 65534), () => chown(main, 0, 0)), false, 'a file of another user');
    assert.equal(await usedAfter(() => chmod(main, 0o602), () => chmod(main, 0o600)), false, 'a file writable by all');
    assert.equal(await usedAfter(() => link(main, path.join(copy, 'hard-link')), () => rm(path.join(copy, 'hard-link'))), false, 'a file with two links');
    // Everything back as it was: used again.
    assert.equal(status()['plumb-main.js'], 'from the code cache');
  });

  test('the code cache is not made under a directory of another user (sudo -E), nor by root with another HOME; a relative XDG_CACHE_HOME is ignored', async () => {
    // Run as root (the test's user) with the XDG cache home inside another user's directory.
    const others = path.join(copy, 'others');
    await mkdir(others);
    await chown(others, 65534, 65534);
    assert.ok(allCompiled(statusWith({ XDG_CACHE_HOME: path.join(others, 'cache') })));
    assert.deepEqual(await readdir(others), []);
    // Root with a HOME that is not root's: no cache under it.
    const home = path.join(copy, 'home-of-another');
    await mkdir(home);
    await chown(home, 65534, 65534);
    assert.ok(allCompiled(statusWith({ HOME: home, XDG_CACHE_HOME: '' })));
    assert.deepEqual(await readdir(home), []);
    // Relative: the cache goes to ~/.cache, not into the directory plumb was run in.
    const relativeHome = path.join(copy, 'relative-home');
    await mkdir(relativeHome);
    statusWith({ HOME: relativeHome, XDG_CACHE_HOME: 'rel-cache' });
    assert.equal(existsSync(path.join(copy, 'rel-cache')), false);
    assert.ok((await readdir(cacheDirIn(path.join(relativeHome, '.cache')))).length > 0);
  });

  test('a relative XDG_CONFIG_HOME is ignored (as XDG says): the config is in ~/.config, not where plumb was run', () => {
    assert.equal(configDir({ XDG_CONFIG_HOME: 'rel-config' }), path.join(os.homedir(), '.config', 'plumb'));
    assert.equal(configDir({ XDG_CONFIG_HOME: '/abs/config' }), '/abs/config/plumb');
  });

  test('a chunk that throws while it runs is not left half made: required again, it runs again (as an ES module would throw again)', async () => {
    // A bundle of two files beside the real bin: the chunk throws on its first run only.
    const dir = await mkdtemp(path.join(copy, 'throwing-'));
    await mkdir(path.join(dir, 'dist'));
    await cp(path.join(copy, 'package.json'), path.join(dir, 'package.json'));
    await cp(path.join(copy, 'dist/plumb.js'), path.join(dir, 'dist/plumb.js'));
    await writeFile(path.join(dir, 'dist/plumb-chunk-T.js'), "globalThis.runs = (globalThis.runs ?? 0) + 1; if (globalThis.runs === 1) throw new Error('first run'); exports.value = 'whole';");
    await writeFile(
      path.join(dir, 'dist/plumb-main.js'),
      "exports.main = async () => { const attempt = () => { try { return require('./plumb-chunk-T.js').value; } catch (e) { return e.message; } }; process.stdout.write(JSON.stringify([attempt(), attempt(), globalThis.runs])); };",
    );
    const r = spawnSync(process.execPath, [path.join(dir, 'dist/plumb.js'), 'x'], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: config, PLUMB_CODE_CACHE: '0' } });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), ['first run', 'whole', 2]);
  });
});
