import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import { DRAIN_TIMEOUT_SECONDS, ENV_VALUE_MAX_CHARS, ERROR_CODES, EXIT, GROUP_PARALLEL, GROUP_PROVISION_MAX, HEALTH_TIMEOUT_SECONDS, HTTPS_MAX_DOMAINS, KEEP_RELEASES, parseWholeNumber, WORKER_COUNT, wholeNumberMessage, type WholeNumberRange } from '@plumb/shared';
import { deployOptionsWith, readPlumbToml } from '@plumb/controller/api-dir/plumb-toml';
import { completionScript } from '@plumb/controller/cli/completion';
import { dirAndSpare } from '@plumb/controller/cli/deploy';
import { plumbProgram } from '@plumb/controller/cli/program';
import { PLUMB_CLI } from '../e2e/plumb.js';

/**
 * The CLI's contract with scripts and people, with no droplet: exit codes, one-line usage errors
 * (also as JSON), strict numbers, confirmation off a terminal, help, completion.
 */

const REPO = path.resolve(path.dirname(PLUMB_CLI), '../../..');

async function configHome(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'plumb-cli-'));
}

function plumb(args: string[], env: Record<string, string> = {}, input?: string) {
  // No DigitalOcean variables from the machine running the tests: each test gives what it means to.
  const { DIGITALOCEAN_ACCESS_TOKEN: _t, PLUMB_DIGITALOCEAN_API_URL: _u, ...base } = process.env;
  // No code cache (test/unit/cli-startup tests it): these runs leave nothing in the real ~/.cache.
  const r = spawnSync(process.execPath, [PLUMB_CLI, ...args], { env: { ...base, PLUMB_CODE_CACHE: '0', ...env }, encoding: 'utf8', stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], input });
  return { exitCode: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A config dir that knows one droplet, `far`, whose agent port answers nothing (a closed port on loopback). */
async function knowsUnreachableDroplet(): Promise<string> {
  const home = await configHome();
  assert.equal(plumb(['keys', 'show'], { XDG_CONFIG_HOME: home }).exitCode, 0, 'keys show makes the controller key');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  const droplet = { name: 'far', id: 42, uuid: '00000000-0000-4000-8000-000000000042', ipv4: '127.0.0.1', agentPort: port, fingerprint: 'a'.repeat(64), region: 'sfo3', size: 's-1vcpu-1gb', createdAt: '2026-11-28T00:00:00.000Z' };
  await writeFile(path.join(home, 'plumb/droplets.json'), JSON.stringify({ version: 1, droplets: [droplet] }), { mode: 0o600 });
  return home;
}

describe('numbers on the command line', () => {
  test('parseWholeNumber takes decimal digits within the range, and nothing else', () => {
    assert.equal(parseWholeNumber('16', WORKER_COUNT), 16);
    assert.equal(parseWholeNumber('0', DRAIN_TIMEOUT_SECONDS), 0);
    for (const bad of ['many', '1e1', '0x10', '7.0', ' 7', '-1', '', '17', '0', '1'.repeat(20)]) {
      assert.throws(() => parseWholeNumber(bad, WORKER_COUNT), /a whole number from 1 to 16/, bad);
    }
  });

  test('plumb scale hello many: one line saying what was wrong, a hint, exit 2, nothing asked of a droplet', async () => {
    const r = plumb(['scale', 'hello', 'many'], { XDG_CONFIG_HOME: await configHome() });
    assert.equal(r.exitCode, EXIT.usage);
    assert.equal(r.stderr, 'plumb: invalid workers "many": a whole number from 1 to 16\n  see `plumb scale --help`\n');
    assert.equal(r.stdout, '');
  });

  test('1e1 is not ten workers, and the error is JSON on stdout with --json', async () => {
    const r = plumb(['deploy', '.', '--name', 'x', '--workers', '1e1', '--json'], { XDG_CONFIG_HOME: await configHome() });
    assert.equal(r.exitCode, EXIT.usage);
    assert.deepEqual(JSON.parse(r.stdout), { error: { code: 'INVALID_INPUT', message: 'invalid --workers "1e1": a whole number from 1 to 16', hint: 'see `plumb deploy --help`' } });
  });
});

describe('usage errors exit 2 with one line and a hint', () => {
  for (const [args, line, hint] of [
    [['nope'], "plumb: unknown command 'nope'", 'see `plumb --help`'],
    [['keys', 'add', 'ed25519:x'], "plumb: required option '--name <name>' not specified", 'see `plumb keys add --help`'],
    [['scale', 'hello'], "plumb: missing required argument 'workers'", 'see `plumb scale --help`'],
    [['keys', 'add', 'k', '--name', 'a', '--bogus'], "plumb: unknown option '--bogus'", 'see `plumb keys add --help`'],
    // A key id is base64url: one that starts with "-" reads as a flag, and the hint says how to pass it.
    [['keys', 'revoke', '-Zk3x', '--yes'], "plumb: unknown option '-Zk3x'", 'if -Zk3x is a value, not a flag, put it after `--`: `plumb keys revoke [flags] -- -Zk3x`'],
    [['deploy', '.', '--name', 'x', '--parallel', '2'], 'plumb: --parallel goes with --group only', 'add --group GROUP to deploy to every droplet of a group, or leave it out'],
    [['logs', 'hello', '-n', '-3'], 'plumb: invalid --lines "-3": a whole number from 0 to 10000', 'see `plumb logs --help`'],
    [['completion', 'tcsh'], 'plumb: invalid shell "tcsh": Allowed choices are bash, zsh, fish.', 'see `plumb completion --help`'],
    [['status', 'a', '--droplet', 'b'], 'plumb: two droplets named: "a" and --droplet "b"', 'name it once'],
    [['destroy', '--yes'], 'plumb: name the droplet to destroy', 'give its name or id, or --droplet NAME'],
    [['lb', 'destroy', 'web'], 'plumb: refusing to destroy the load balancer of web without confirmation: stdin is not a terminal', 'add --yes'],
    [['keys', 'revoke', 'alice', '--all'], 'plumb: refusing to revoke alice without confirmation: stdin is not a terminal', 'add --yes'],
    // The argument may be a secret typed without its name: it is not repeated.
    [['deploy', '.', '--name', 'x', '--env', 'hunter2-not-echoed'], 'plumb: invalid --env: an argument has no "=" (expected KEY=VALUE)', 'for a secret, use `plumb secrets set NAME KEY` (it reads the value from stdin)'],
  ] as const) {
    test(`plumb ${args.join(' ')}`, async () => {
      const r = plumb([...args], { XDG_CONFIG_HOME: await configHome() });
      assert.equal(r.exitCode, EXIT.usage, r.stderr);
      assert.equal(r.stderr, `${line}\n  ${hint}\n`);
    });
  }

  test('plumb alone prints the help and exits 2; --help and --version exit 0', () => {
    const bare = plumb([]);
    assert.equal(bare.exitCode, EXIT.usage);
    assert.match(bare.stderr, /^Usage: plumb /);
    assert.equal(plumb(['--help']).exitCode, EXIT.ok);
    assert.equal(plumb(['deploy', '--help']).exitCode, EXIT.ok);
    assert.match(plumb(['--version']).stdout, /^\d+\.\d+\.\d+\n$/);
  });
});

describe('exit codes of failures', () => {
  test('no DigitalOcean token: exit 4 (authentication needed), with and without --json', async () => {
    const home = await configHome();
    for (const json of [[], ['--json']]) {
      const r = plumb(['droplets', ...json], { XDG_CONFIG_HOME: home });
      assert.equal(r.exitCode, EXIT.auth, r.stderr);
      assert.match(r.stderr, /^plumb: .*DIGITALOCEAN_ACCESS_TOKEN/);
    }
  });

  test('a command with no droplet to act on: exit 2 and how to name one', async () => {
    const r = plumb(['releases', 'hello'], { XDG_CONFIG_HOME: await configHome() });
    assert.equal(r.exitCode, EXIT.usage);
    assert.equal(r.stderr, 'plumb: plumb knows no droplet\n  run `plumb provision` first\n');
  });

  test('status of a droplet whose agent does not answer: exit 3, the same with --json', async () => {
    const home = await knowsUnreachableDroplet();
    const text = plumb(['status'], { XDG_CONFIG_HOME: home });
    assert.equal(text.exitCode, EXIT.unreachable, text.stderr);
    assert.match(text.stdout, /^far  127\.0\.0\.1  UNREACHABLE: cannot reach the agent at 127\.0\.0\.1:\d+: ECONNREFUSED/);
    const json = plumb(['status', '--droplet', 'far', '--json'], { XDG_CONFIG_HOME: home });
    assert.equal(json.exitCode, EXIT.unreachable, json.stderr);
    assert.equal((JSON.parse(json.stdout) as Array<{ code: string }>)[0]?.code, 'AGENT_UNREACHABLE');
    const forward = plumb(['forward', 'hello', '--json'], { XDG_CONFIG_HOME: home });
    assert.equal(forward.exitCode, EXIT.unreachable);
    assert.equal((JSON.parse(forward.stdout) as { error: { code: string } }).error.code, 'AGENT_UNREACHABLE');
  });

  test('a command left waiting on a promise nothing can settle is told as a bug with exit 1, not node\'s silent 13', () => {
    const run = (guarded: boolean) => spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { reportIfUnfinished } = await import(${JSON.stringify(path.join(path.dirname(PLUMB_CLI), 'cli/run.js'))});
      ${guarded ? 'const done = reportIfUnfinished(false);' : ''}
      await new Promise(() => {});
    `], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    assert.equal(run(false).status, 13, 'node alone: 13');
    const guarded = run(true);
    assert.equal(guarded.status, EXIT.failure, guarded.stderr);
    assert.match(guarded.stderr, /^plumb: unexpected error: Error: the command stopped before it finished, waiting for something that can no longer happen \(a bug in plumb/);
  });

  test('remove and destroy off a terminal without --yes refuse before anything is asked, exit 2', async () => {
    // The droplet cannot be reached: a refusal that came after asking it would say so instead.
    const home = await knowsUnreachableDroplet();
    const removed = plumb(['remove', 'hello'], { XDG_CONFIG_HOME: home });
    assert.equal(removed.exitCode, EXIT.usage);
    assert.equal(removed.stderr, 'plumb: refusing to remove hello without confirmation: stdin is not a terminal\n  add --yes\n');
    const destroyed = plumb(['destroy', '--droplet', 'far', '--json'], { XDG_CONFIG_HOME: home, DIGITALOCEAN_ACCESS_TOKEN: 'unused' });
    assert.equal(destroyed.exitCode, EXIT.usage);
    assert.equal((JSON.parse(destroyed.stdout) as { error: { code: string } }).error.code, 'CONFIRMATION_NEEDED');
    assert.match(await readFile(path.join(home, 'plumb/droplets.json'), 'utf8'), /"far"/, 'the droplet is still known');
  });
});

describe('at a terminal', () => {
  /** `plumb ARGS` on a pseudo-terminal (`script`, as a person at one has); `key` is typed once `prompt` shows. */
  async function typedAtPrompt(args: string[], env: Record<string, string>, prompt: RegExp, key: string): Promise<{ exitCode: number | null; output: string }> {
    const command = [process.execPath, PLUMB_CLI, ...args].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, PLUMB_CODE_CACHE: '0', NODE_EXTRA_CA_CERTS: '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let typed = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (!typed && prompt.test(output)) {
        typed = true;
        child.stdin.write(key);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [exitCode] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    return { exitCode, output };
  }

  for (const [key, name] of [['\u0003', 'Ctrl-C'], ['\u0004', 'Ctrl-D']] as const) {
    test(`${name} at a confirmation question gives up: "cancelled", exit 2, the droplet still known`, async () => {
      const home = await knowsUnreachableDroplet();
      const { exitCode, output } = await typedAtPrompt(['destroy', '--droplet', 'far'], { XDG_CONFIG_HOME: home, DIGITALOCEAN_ACCESS_TOKEN: 'unused' }, /Type its name to confirm: /, key);
      assert.match(output, /plumb: cancelled: nothing was changed/);
      assert.doesNotMatch(output, /unexpected error|AbortError/);
      assert.equal(exitCode, EXIT.usage, output);
      assert.match(await readFile(path.join(home, 'plumb/droplets.json'), 'utf8'), /"far"/);
    });
  }
});

describe('limits a user meets on the command line: one past is refused before anything is asked, the limit itself is not', () => {
  const domains = (n: number) => Array.from({ length: n }, (_, i) => ['-d', `d${i}.example.com`]).flat();
  const value = (chars: number) => 'x'.repeat(chars);
  const noDroplet = 'plumb: plumb knows no droplet\n  run `plumb provision` first\n';
  const noToken = /^plumb: DIGITALOCEAN_ACCESS_TOKEN is not set/;
  /** [what, arguments for (limit), its stdin, what it gets at the limit (the next thing it needs), the one-line refusal one past it]. */
  const cases: Array<[string, (limit: number) => string[], (limit: number) => string | undefined, number, string | RegExp, (limit: number) => string]> = [
    [`plumb https names at most ${HTTPS_MAX_DOMAINS} domains`, (n) => ['https', ...domains(n), '--email', 'me@example.com', '--agree-tos'], () => undefined, HTTPS_MAX_DOMAINS, noDroplet,
      (n) => `plumb: ${n} domains: one certificate names at most ${HTTPS_MAX_DOMAINS}\n  give at most ${HTTPS_MAX_DOMAINS} --domain\n`],
    [`plumb lb https names at most ${HTTPS_MAX_DOMAINS} domains`, (n) => ['lb', 'https', 'web', ...domains(n)], () => undefined, HTTPS_MAX_DOMAINS, noToken,
      () => `plumb: at most ${HTTPS_MAX_DOMAINS} domains per certificate\n  give fewer --domain\n`],
    [`plumb provision --group makes at most ${GROUP_PROVISION_MAX} droplets`, (n) => ['provision', '--group', 'web', '--count', String(n)], () => undefined, GROUP_PROVISION_MAX, noToken,
      (n) => `plumb: invalid --count "${n}": a whole number from 1 to ${GROUP_PROVISION_MAX}\n  see \`plumb provision --help\`\n`],
    [`plumb deploy --group runs at most ${GROUP_PARALLEL.max} droplets at a time`, (n) => ['deploy', path.join(REPO, 'packages/controller/examples/hello'), '--name', 'hello', '--group', 'web', '--parallel', String(n)], () => undefined, GROUP_PARALLEL.max, noToken,
      (n) => `plumb: invalid --parallel "${n}": a whole number from ${GROUP_PARALLEL.min} to ${GROUP_PARALLEL.max}\n  see \`plumb deploy --help\`\n`],
    [`plumb secrets set takes a value of at most ${ENV_VALUE_MAX_CHARS} characters`, () => ['secrets', 'set', 'hello', 'TOKEN'], (n) => value(n), ENV_VALUE_MAX_CHARS, noDroplet,
      () => `plumb: invalid secret TOKEN value: an environment value is at most ${ENV_VALUE_MAX_CHARS} characters\n  an environment value is one line: put multi-line text in a file the API reads\n`],
  ];
  for (const [what, args, input, limit, atLimit, refusal] of cases) {
    test(what, async () => {
      const home = await configHome();
      const at = plumb(args(limit), { XDG_CONFIG_HOME: home }, input(limit));
      assert.notEqual(at.exitCode, EXIT.ok);
      if (typeof atLimit === 'string') assert.equal(at.stderr, atLimit);
      else assert.match(at.stderr, atLimit);
      const over = plumb([...args(limit + 1), '--json'], { XDG_CONFIG_HOME: home }, input(limit + 1));
      assert.equal(over.exitCode, EXIT.usage);
      assert.equal((JSON.parse(over.stdout) as { error: { code: string } }).error.code, 'INVALID_INPUT');
      assert.equal(plumb(args(limit + 1), { XDG_CONFIG_HOME: home }, input(limit + 1)).stderr, refusal(limit + 1));
    });
  }

  test(`plumb deploy takes --env values of at most ${ENV_VALUE_MAX_CHARS} characters, --keep up to ${KEEP_RELEASES.max}, --health-timeout up to ${HEALTH_TIMEOUT_SECONDS.max}`, async () => {
    const home = await configHome();
    await writeFile(path.join(home, 'plumber.R'), '#* @get /x\nfunction() 1\n');
    const deploy = (flags: string[]) => plumb(['deploy', home, '--name', 'x', '--no-deps', ...flags], { XDG_CONFIG_HOME: home });
    const refusedFlag = (flag: string, r: WholeNumberRange) => (n: number) => `plumb: invalid ${flag} "${n}": ${wholeNumberMessage(r)}\n  see \`plumb deploy --help\`\n`;
    const limits: Array<[(n: number) => string[], number, (n: number) => string]> = [
      [(n) => ['--env', `K=${value(n)}`], ENV_VALUE_MAX_CHARS, () => `plumb: invalid --env K value: an environment value is at most ${ENV_VALUE_MAX_CHARS} characters\n  an environment value is one line: put multi-line text in a file the API reads\n`],
      [(n) => ['--keep', String(n)], KEEP_RELEASES.max, refusedFlag('--keep', KEEP_RELEASES)],
      [(n) => ['--health-timeout', String(n)], HEALTH_TIMEOUT_SECONDS.max, refusedFlag('--health-timeout', HEALTH_TIMEOUT_SECONDS)],
    ];
    for (const [flags, limit, refusal] of limits) {
      assert.equal(deploy(flags(limit)).stderr, noDroplet, flags(limit)[0]);
      const over = deploy(flags(limit + 1));
      assert.equal(over.exitCode, EXIT.usage);
      assert.equal(over.stderr, refusal(limit + 1));
    }
  });

  test(`plumb secrets set stops reading a stdin that goes on past ${ENV_VALUE_MAX_CHARS} characters of 4 bytes`, async () => {
    const r = plumb(['secrets', 'set', 'hello', 'TOKEN'], { XDG_CONFIG_HOME: await configHome() }, value(ENV_VALUE_MAX_CHARS * 4 + 3));
    assert.equal(r.exitCode, EXIT.usage);
    assert.equal(r.stderr, `plumb: the value from stdin is over ${ENV_VALUE_MAX_CHARS * 4 + 2} bytes\n  a secret is one line of at most ${ENV_VALUE_MAX_CHARS} characters: put larger data in a file the API reads\n`);
  });
});

describe('plumb.toml', () => {
  test('plumb init writes one named after the directory; deploy reads it, flags win, env merges per key', async () => {
    const dir = path.join(await configHome(), 'my-api');
    await mkdir(dir);
    const inited = plumb(['init', dir]);
    assert.equal(inited.exitCode, 0, inited.stderr);
    assert.deepEqual(await readPlumbToml(dir), { name: 'my-api', env: {} });
    assert.equal(plumb(['init', dir]).exitCode, EXIT.usage, 'an existing plumb.toml is kept');
    await writeFile(path.join(dir, 'plumb.toml'), 'name = "sum"\npath = "/s"\nworkers = 2\ndroplet = "a"\n[env]\nMODE = "toml"\nKEEP = "1"\n');
    const opts = deployOptionsWith(await readPlumbToml(dir), { dir, workers: 3, env: ['MODE=flag'] });
    assert.deepEqual(
      { name: opts.name, path: opts.path, workers: opts.workers, droplet: opts.droplet, env: opts.env },
      { name: 'sum', path: '/s', workers: 3, droplet: 'a', env: ['MODE=toml', 'KEEP=1', 'MODE=flag'] },
    );
  });

  test('a plumb.toml with a bad value or an unknown key: one line naming the file and the key, exit 2', async () => {
    const dir = await configHome();
    await writeFile(path.join(dir, 'plumb.toml'), 'name = "sum"\nworkers = 40\n');
    const r = spawnSync(process.execPath, [PLUMB_CLI, 'deploy'], { cwd: dir, env: { ...process.env, XDG_CONFIG_HOME: dir, PLUMB_CODE_CACHE: '0' }, encoding: 'utf8' });
    assert.equal(r.status, EXIT.usage);
    assert.match(r.stderr, /^plumb: invalid plumb\.toml: workers: a whole number from 1 to 16\n/);
    await writeFile(path.join(dir, 'plumb.toml'), 'name = "sum"\nworker = 2\n');
    await assert.rejects(readPlumbToml(dir), /invalid .*plumb\.toml: .*worker/);
    await writeFile(path.join(dir, 'plumb.toml'), 'path = "/x"\n');
    const unnamed = plumb(['deploy', dir], { XDG_CONFIG_HOME: dir });
    assert.equal(unnamed.exitCode, EXIT.usage);
    assert.equal(unnamed.stderr, 'plumb: no API name: give --name NAME\n  or write one in plumb.toml (plumb init makes it)\n');
  });
});

describe('plumb deploy --spare [when]', () => {
  const noDroplet = 'plumb: plumb knows no droplet\n  run `plumb provision` first\n';
  const notAWhen = (word: string) => `plumb: invalid --spare "${word}": Allowed choices are always, auto, never.\n  see \`plumb deploy --help\`\n`;
  /** An API directory whose plumb.toml names it: a deploy given no --name knows the name only if it read this DIR. */
  async function namedApi(): Promise<string> {
    const dir = path.join(await configHome(), 'my-api');
    await mkdir(dir);
    await writeFile(path.join(dir, 'plumber.R'), '#* @get /x\nfunction() 1\n');
    await writeFile(path.join(dir, 'plumb.toml'), 'name = "sum"\n');
    return dir;
  }
  /** --spare and --no-spare as the deploy command parses ARGS, and the words left for DIR. */
  function parsed(args: string[]) {
    const deploy = plumbProgram().commands.find((c) => c.name() === 'deploy');
    assert.ok(deploy);
    const { operands } = deploy.parseOptions(args);
    return { spare: deploy.opts().spare as unknown, operands };
  }

  test('a directory after a bare --spare is DIR (commander reads the word after it as WHEN), and the deploy goes on with it', async () => {
    const dir = await namedApi();
    const home = await configHome();
    // No --name: only DIR's plumb.toml names the API, so an answer about droplets means DIR was read.
    for (const args of [['--spare', dir], ['--spare', dir, '--no-spare'], [dir, '--spare'], ['--spare', 'auto', dir]]) {
      assert.equal(plumb(['deploy', ...args, '--no-deps'], { XDG_CONFIG_HOME: home }).stderr, noDroplet, args.join(' '));
    }
    assert.deepEqual(parsed(['--spare', dir]), { spare: { when: 'always', dir }, operands: [] });
    assert.deepEqual(parsed(['--spare', dir, '--no-spare']), { spare: { when: 'never', dir }, operands: [] });
    assert.deepEqual(parsed(['--spare', 'auto', dir]), { spare: { when: 'auto' }, operands: [dir] });
    assert.deepEqual(parsed(['--spare', '--wait']), { spare: { when: 'always' }, operands: [] });
    assert.deepEqual(parsed(['--no-spare']), { spare: { when: 'never' }, operands: [] });
    assert.deepEqual(parsed([dir]), { spare: undefined, operands: [dir] });
    assert.deepEqual(dirAndSpare('.', false, { when: 'always', dir }), { dir, spare: true });
    assert.deepEqual(dirAndSpare(dir, true, { when: 'auto' }), { dir, spare: 'auto' });
    assert.deepEqual(dirAndSpare(dir, true, undefined), { dir });
  });

  test('--spare then a word that is no WHEN and no directory, or a second DIR: one line with the choices, exit 2, also as JSON', async () => {
    const home = await configHome();
    const dir = await namedApi();
    for (const [args, word] of [[['--spare', 'bogus', '--name', 'x'], 'bogus'], [['--spare', dir, dir], dir], [['--spare', dir, '--spare', dir], dir]] as const) {
      const r = plumb(['deploy', ...args], { XDG_CONFIG_HOME: home });
      assert.equal(r.exitCode, EXIT.usage, args.join(' '));
      assert.equal(r.stderr, notAWhen(word), args.join(' '));
      const json = plumb(['deploy', ...args, '--json'], { XDG_CONFIG_HOME: home });
      assert.equal((JSON.parse(json.stdout) as { error: { code: string } }).error.code, 'INVALID_INPUT');
    }
  });
});

/** Every command of the tree, as `plumb WORDS`, with its commander object. */
function leaves(command: CommandUnknownOpts, words: string[] = []): Array<{ words: string[]; command: CommandUnknownOpts }> {
  if (command.commands.length === 0) return [{ words, command }];
  return command.commands.flatMap((c) => leaves(c, [...words, c.name()]));
}
const program = plumbProgram() as unknown as CommandUnknownOpts;

describe('every command', () => {
  test('that acts on a droplet takes --droplet, and every one that prints a result takes --json and --quiet', () => {
    // These act on no droplet: they make one, list or share what this machine knows, print a script,
    // or act on a group's load balancer.
    const noDroplet = ['provision', 'adopt', 'init', 'droplets list', 'droplets export', 'droplets import', 'keys show', 'completion', 'lb list', 'lb create', 'lb https', 'lb destroy', 'group sync'];
    for (const { words, command } of leaves(program)) {
      const flags = command.options.map((o) => o.long);
      if (!noDroplet.includes(words.join(' '))) assert.ok(flags.includes('--droplet'), `plumb ${words.join(' ')} takes --droplet`);
      if (!['droplets export', 'completion', 'logs'].includes(words.join(' '))) {
        assert.ok(flags.includes('--json') && flags.includes('--quiet'), `plumb ${words.join(' ')} takes --json and --quiet`);
      }
    }
  });

  test('has examples and the environment it reads in its --help', () => {
    for (const { words, command } of leaves(program)) {
      let help = '';
      command.configureOutput({ writeOut: (text) => (help += text) });
      command.outputHelp();
      assert.match(help, /\nExamples:\n {2}\$ \S*plumb /, `plumb ${words.join(' ')} --help`);
      assert.match(help, /\nEnvironment:\n[\s\S]*XDG_CONFIG_HOME/, `plumb ${words.join(' ')} --help`);
    }
    assert.match(plumb(['deploy', '--help']).stdout, /Examples:\n {2}\$ plumb deploy \.\/my-api --name hello\n/, 'and the binary prints it');
  });
});

describe('completion', () => {
  const complete = (script: string, words: string[]) => {
    const r = spawnSync('bash', ['-c', `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _plumb; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split('\n').filter(Boolean);
  };

  test('bash: commands, subcommands and flags of the command typed, from `plumb completion bash`', () => {
    const script = plumb(['completion', 'bash']).stdout;
    assert.deepEqual(complete(script, ['plumb', 'de']), ['deploy', 'deps', 'destroy']);
    assert.deepEqual(complete(script, ['plumb', 'deploy', './api', '--wo']), ['--workers']);
    assert.deepEqual(complete(script, ['plumb', 'keys', '']), ['show', 'list', 'add', 'revoke', '--help']);
    assert.deepEqual(complete(script, ['plumb', 'keys', 'revoke', 'alice', '--a']), ['--all']);
    assert.deepEqual(complete(script, ['plumb', 'status', '--d']), ['--droplet']);
  });

  test('zsh and fish scripts name every command and flag', () => {
    const zsh = completionScript(program, 'zsh');
    const fish = completionScript(program, 'fish');
    assert.match(zsh, /^#compdef plumb\n/);
    for (const { words, command } of leaves(program)) {
      assert.ok(zsh.includes(`'${words.join(' ')}') key='${words.join(' ')}'`), words.join(' '));
      for (const o of command.options) {
        if (o.long) assert.ok(fish.includes(`-n '${words.map((w) => `__fish_seen_subcommand_from ${w}`).join('; and ')}' -l ${o.long.slice(2)} `), `fish: plumb ${words.join(' ')} ${o.long}`);
      }
    }
  });
});

test('docs/commands.md lists every error code with its exit code and meaning', async () => {
  const docs = await readFile(path.join(REPO, 'docs/commands.md'), 'utf8');
  for (const [code, [kind, meaning]] of Object.entries(ERROR_CODES)) {
    assert.ok(docs.includes(`| \`${code}\` | ${EXIT[kind]} | ${meaning} |`), `docs/commands.md: ${code}`);
  }
});
