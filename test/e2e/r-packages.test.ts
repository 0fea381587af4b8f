import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DeployResult, PackagesResult, StatusResult } from '@plumb/shared';
import type { Lab } from '../lab/lab.js';
import { apiDir } from './api-fixtures.js';
import { startCranRepo, type CranRepo, type RPackageFixture } from './cran-repo.js';
import { pollUntil, SPARE_CRASHES_ALERT } from '@plumb/shared';
import { SPARE_READY } from '@plumb/agent/render/runner';
import { httpGet, settled } from './helpers.js';
import { agentAnswersAgain, readySpare as waitingSpare, sharedDroplet, type PlumbUser, type SpareShown } from './plumb.js';

/**
 * An API's R packages (issue 10), as a user meets them: `plumb deploy` finds them in the code,
 * a DESCRIPTION or an renv.lock and the droplet installs them before the release starts, from
 * Debian's archive or, for what Debian does not ship, from a CRAN-like repository (one the test
 * serves on the lab host) into the API's own library. One droplet for every test here.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;
let repo: CranRepo;

const get = async (path: string) => JSON.parse((await httpGet(`http://${address}${path}`, 5000)).body) as unknown;
const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);

/** `plumb deploy DIR --name NAME ARGS --json`: the agent's report, or the failure as the user sees it. */
async function deploy(files: Record<string, string>, name: string, args: string[] = []) {
  const run = await user.plumb(['deploy', await apiDir(files), '--name', name, '--json', ...args]);
  return { ...run, result: run.exitCode === 0 ? (JSON.parse(run.stdout) as DeployResult) : undefined };
}
const installedBy = (result: DeployResult | undefined) => result?.packages?.installed.map((p) => `${p.name} ${p.source}`).sort();

const demo = (version: string): RPackageFixture => ({ name: 'plumbdemo', version, code: { 'version.R': `demo_version <- function() "${version}"\n` } });

sharedDroplet(
  'rpkgs',
  async (shared) => {
    ({ lab, user, id: dropletId, address } = shared);
    repo = await startCranRepo(
      [
        demo('2.0'),
        { name: 'plumbextra', version: '1.0', code: { 'extra.R': 'extra <- function() "extra"\n' } },
        { name: 'plumbbroken', version: '1.0', code: { 'broken.R': 'broken <- function( {\n' } },
        // Ends R as it loads in a warm spare only (PLUMB_SPARE is set while a spare loads packages): what
        // commands.md warns of, a package's .onLoad reading the environment.
        { name: 'plumbspareless', version: '1.0', code: { 'zzz.R': '.onLoad <- function(libname, pkgname) if (nzchar(Sys.getenv("PLUMB_SPARE"))) quit(save = "no", status = 3)\nspareless <- function() "ok"\n' } },
        // Keeps what GREETING (an --env) was as it loaded: a spare loads it long before the release
        // it serves, and must see what a cold start sees.
        // Takes seconds to load, in a cold start and in a spare alike: a redeploy right after the
        // last finds the spare still loading it.
        { name: 'plumbslowload', version: '1.0', code: { 'zzz.R': '.onLoad <- function(libname, pkgname) Sys.sleep(5)\nslow <- function() "loaded"\n' } },
        { name: 'plumbenvseen', version: '1.0', code: { 'zzz.R': 'seen <- new.env()\n.onLoad <- function(libname, pkgname) assign("greeting", Sys.getenv("GREETING", "unset"), envir = seen)\ngreeting_at_load <- function() get("greeting", envir = seen)\n' } },
      ],
      [demo('1.0')],
    );
  },
);

after(async () => {
  await repo?.close();
});

/** base64enc through library(), digest through pkg::fn: both small, both in Debian 13, neither installed with plumber. */
const hashApi = (version: string) => ({
  'plumber.R': `library(base64enc)
#* @get /enc
function(x = "hi") base64encode(charToRaw(x))
#* @get /hash
function(x = "hi") digest::digest(x, algo = "md5", serialize = FALSE)
#* @get /version
function() "${version}"
`,
});

describe('R packages from Debian', () => {
  test('an API using Debian-shipped packages through library() and pkg::fn deploys with no manual step; a second deploy installs nothing', async () => {
    const plan = await user.plumb(['deps', await apiDir(hashApi('v1'))]);
    assert.equal(plan.exitCode, 0, plan.stderr);
    assert.match(plan.stdout, /R packages from the code .*: base64enc, digest/);
    assert.match(plan.stdout, /base64enc\s+apt \(Debian\)\s+0\.1-3\s+r-cran-base64enc/);
    assert.match(plan.stdout, /digest\s+apt \(Debian\)\s+\S+\s+r-cran-digest/);

    const first = await deploy(hashApi('v1'), 'hash');
    assert.equal(first.exitCode, 0, first.stderr);
    assert.deepEqual(installedBy(first.result), ['base64enc debian', 'digest debian']);
    assert.match(first.stderr, /installing R packages \(apt\)/);
    assert.deepEqual(await get('/hash/enc?x=abc'), ['YWJj']);
    assert.deepEqual(await get('/hash/hash?x=abc'), ['900150983cd24fb0d6963f7d28e17f72']);

    const second = await deploy(hashApi('v2'), 'hash');
    assert.equal(second.exitCode, 0, second.stderr);
    assert.deepEqual(installedBy(second.result), []);
    assert.deepEqual(second.result?.packages?.packages.map((p) => `${p.name} ${p.source} ${p.library}`), ['base64enc debian /usr/lib/R/site-library', 'digest debian /usr/lib/R/site-library']);
    assert.doesNotMatch(second.stderr, /installing R packages/);
    assert.deepEqual(await get('/hash/version'), ['v2']);

    const listed = await user.plumb(['packages', 'hash', '--json']);
    assert.equal(listed.exitCode, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as PackagesResult).packages.map((p) => [p.name, p.source]), [['base64enc', 'debian'], ['digest', 'debian']]);

    const unchecked = await user.plumb(['deploy', await apiDir(hashApi('v3')), '--name', 'hash', '--no-deps']);
    assert.equal(unchecked.exitCode, 0, unchecked.stderr);
    assert.match(unchecked.stdout, /R packages: not checked \(--no-deps\)/);
  });

  test('the same kind of API described by a DESCRIPTION, and by an renv.lock, deploys the same way; renv.lock versions that differ are warnings, or errors with --strict-versions', async () => {
    // Loaded through a variable: no code scan could see it, only the DESCRIPTION names it.
    const hidden = (pkg: string, call: string) => `pkg <- "${pkg}"\nlibrary(pkg, character.only = TRUE)\n#* @get /x\nfunction() ${call}\n`;
    const described = await deploy({ 'plumber.R': hidden('praise', 'is.function(praise)'), DESCRIPTION: 'Package: described\nVersion: 0.1\nImports: praise (>= 1.0.0)\n' }, 'described');
    assert.equal(described.exitCode, 0, described.stderr);
    assert.deepEqual(installedBy(described.result), ['praise debian']);
    assert.deepEqual(await get('/described/x'), [true]);

    const lock = (jsonlite: string) =>
      JSON.stringify({
        R: { Version: '4.5.0' },
        Packages: {
          bitops: { Package: 'bitops', Version: '1.0-9', Source: 'Repository', Repository: 'CRAN' },
          jsonlite: { Package: 'jsonlite', Version: jsonlite, Source: 'Repository', Repository: 'CRAN' },
        },
      });
    const jsonliteVersion = (await onDroplet(['Rscript', '-e', 'cat(as.character(packageVersion("jsonlite")))'])).trim();
    const locked = await deploy({ 'plumber.R': hidden('bitops', 'bitAnd(12L, 10L)'), 'renv.lock': lock('1.8.0') }, 'locked');
    assert.equal(locked.exitCode, 0, locked.stderr);
    assert.deepEqual(installedBy(locked.result), ['bitops debian']);
    assert.deepEqual(locked.result?.packages?.warnings, [`jsonlite: renv.lock asks for == 1.8.0, the droplet has ${jsonliteVersion}`]);
    assert.deepEqual(await get('/locked/x'), [8]);

    const strict = await user.plumb(['deploy', await apiDir({ 'plumber.R': hidden('bitops', 'bitOr(12L, 10L)'), 'renv.lock': lock('1.8.0') }), '--name', 'locked', '--strict-versions']);
    assert.equal(strict.exitCode, 1);
    assert.match(strict.stderr, /failed at "checking R package versions".*jsonlite: renv\.lock asks for == 1\.8\.0/);
    assert.deepEqual(await get('/locked/x'), [8]);
  });
});

describe('R packages not checked again', () => {
  const jsonApi = (version: string) => ({ 'plumber.R': `library(jsonlite)\n#* @get /v\nfunction() "${version}"\n` });
  const calls = '/var/log/plumb-test-rscript-calls';
  /** How many times the agent has asked R for its installed packages (INSPECT_R) since the wrapper went in. */
  const checks = async () => Number((await onDroplet(['sh', '-c', `grep -c installed.packages ${calls} || true`])).trim());
  const jsonliteOf = (result: DeployResult | undefined) => result?.packages?.packages.filter((p) => p.name === 'jsonlite').map((p) => `${p.source} ${p.library}`);

  test('a redeploy whose packages and R libraries are unchanged starts no R to check them, after an agent restart too; one after a package was edited by hand or a library changed checks again', async () => {
    // Every Rscript the agent starts by name goes through this wrapper (/usr/local/bin comes before
    // /usr/bin on its PATH); workers run /usr/bin/Rscript by its full path.
    await onDroplet(['sh', '-c', `printf '#!/bin/sh\\necho "$*" >> ${calls}\\nexec /usr/bin/Rscript "$@"\\n' > /usr/local/bin/Rscript && chmod 755 /usr/local/bin/Rscript && : > ${calls}`]);
    try {
      const first = await deploy(jsonApi('v1'), 'unchecked');
      assert.equal(first.exitCode, 0, first.stderr);
      assert.equal(first.result?.packages?.cached, false);
      assert.equal(await checks(), 1);

      const second = await deploy(jsonApi('v2'), 'unchecked');
      assert.equal(second.exitCode, 0, second.stderr);
      assert.equal(second.result?.packages?.cached, true);
      assert.equal(await checks(), 1);
      assert.deepEqual(jsonliteOf(second.result), ['debian /usr/lib/R/site-library']);
      // The release whose packages were not checked serves (a long wait: R on a loaded droplet).
      assert.deepEqual(JSON.parse((await httpGet(`http://${address}/unchecked/v`, 60_000)).body), ['v2']);

      // The last check is kept on disk: a restarted (or upgraded) agent does not check again.
      await onDroplet(['systemctl', 'restart', 'plumb-agent']);
      assert.ok(await agentAnswersAgain(user), 'the agent answers after its restart');
      const afterRestart = await deploy(jsonApi('v2r'), 'unchecked');
      assert.equal(afterRestart.exitCode, 0, afterRestart.stderr);
      assert.equal(afterRestart.result?.packages?.cached, true);
      assert.equal(await checks(), 1);
      assert.equal((await onDroplet(['stat', '-c', '%a %U', '/var/lib/plumb/package-checks.json'])).trim(), '600 root');

      // A package edited by hand in place (its directory's own listing unchanged): checked again.
      await onDroplet(['sh', '-c', 'echo "X-Edited: by hand" >> /usr/lib/R/site-library/jsonlite/DESCRIPTION']);
      const edited = await deploy(jsonApi('v2e'), 'unchecked');
      assert.equal(edited.exitCode, 0, edited.stderr);
      assert.equal(edited.result?.packages?.cached, false);
      assert.equal(await checks(), 2);

      // A package put in by hand where R looks first: the next deploy must see it.
      await onDroplet(['sh', '-c', 'mkdir -p /usr/local/lib/R/site-library && cp -a /usr/lib/R/site-library/jsonlite /usr/local/lib/R/site-library/']);
      const third = await deploy(jsonApi('v3'), 'unchecked');
      assert.equal(third.exitCode, 0, third.stderr);
      assert.equal(third.result?.packages?.cached, false);
      assert.equal(await checks(), 3);
      assert.deepEqual(jsonliteOf(third.result), ['local /usr/local/lib/R/site-library']);

      // `plumb remove` takes the API's check with it: the file holds no entry for an API that is gone.
      const checked = async () => Object.keys(JSON.parse(await onDroplet(['cat', '/var/lib/plumb/package-checks.json'])) as object);
      assert.ok((await checked()).includes('unchecked'));
      assert.equal((await user.plumb(['remove', 'unchecked', '--yes'])).exitCode, 0);
      assert.ok(!(await checked()).includes('unchecked'), 'the removed API has no package check left');
    } finally {
      await onDroplet(['rm', '-rf', '/usr/local/bin/Rscript', '/usr/local/lib/R/site-library/jsonlite', calls]);
    }
  });
});

describe('R packages from a CRAN-like repository', () => {
  /** Says which plumbdemo it loaded and from where. */
  const demoApi = { 'plumber.R': 'library(plumbdemo)\n#* @get /v\nfunction() list(version = demo_version(), from = find.package("plumbdemo"))\n' };
  /** Where an API's own packages are: a generation of its library (library/g-HASH). */
  const GENERATION = (name: string) => new RegExp(`^/var/plumber/${name}/library/g-[0-9a-f]{16}$`);
  /** The plumbdemo the API's worker loads: its version, and whether from a generation of the API's library. */
  const demoOf = async (name: string) => {
    const { version, from } = (await get(`/${name}/v`)) as { version: [string]; from: [string] };
    return { version: version[0], generation: GENERATION(name).test(from[0].replace(/\/plumbdemo$/, '')) };
  };
  const generationOf = async (name: string) => ((await get(`/${name}/v`)) as { from: [string] }).from[0].replace(/\/plumbdemo$/, '');
  const pinned = (version: string) => JSON.stringify({ R: { Version: '4.5.0' }, Packages: { plumbdemo: { Package: 'plumbdemo', Version: version, Source: 'Repository', Repository: 'CRAN' } } });

  test("a package Debian does not ship is built from the repository into the API's own library; a second API pinned to an older version keeps its own", async () => {
    const newer = await deploy(demoApi, 'newer', ['--repo', repo.url]);
    assert.equal(newer.exitCode, 0, newer.stderr);
    assert.deepEqual(installedBy(newer.result), ['plumbdemo source']);
    assert.match(newer.stderr, /installing R packages \(source build\)/);

    const older = await deploy({ ...demoApi, 'renv.lock': pinned('1.0') }, 'older', ['--repo', repo.url]);
    assert.equal(older.exitCode, 0, older.stderr);
    assert.deepEqual(older.result?.packages?.installed.map((p) => `${p.name} ${p.version}`), ['plumbdemo 1.0']);
    assert.match(older.result?.packages?.installed[0]?.library ?? '', GENERATION('older'));

    assert.deepEqual(await demoOf('newer'), { version: '2.0', generation: true });
    assert.deepEqual(await demoOf('older'), { version: '1.0', generation: true });
    // Root's, and only readable by the API's processes.
    const olderLibrary = older.result?.packages?.installed[0]?.library ?? '';
    assert.equal(await onDroplet(['stat', '-c', '%U %a', '/var/plumber/older/library', olderLibrary, `${olderLibrary}/plumbdemo`]), 'root 755\nroot 755\nroot 755');
    assert.equal(await onDroplet(['sh', '-c', 'ls /usr/lib/R/site-library /usr/local/lib/R/site-library | grep -c plumbdemo || true']), '0');

    const listed = await user.plumb(['packages', 'older', '--json']);
    assert.deepEqual((JSON.parse(listed.stdout) as PackagesResult).packages.map((p) => [p.name, p.version, p.source]), [['plumbdemo', '1.0', 'source']]);

    // The repository is remembered for the API: a redeploy without --repo installs nothing and keeps 2.0.
    const again = await deploy(demoApi, 'newer');
    assert.equal(again.exitCode, 0, again.stderr);
    assert.deepEqual(installedBy(again.result), []);
  });

  test('a package that cannot be installed fails the deploy before the switch, naming it and the step; the old release still answers and the library is untouched', async () => {
    const libraryBefore = await onDroplet(['ls', '-A', '/var/plumber/newer/library']);

    const unknown = await user.plumb(['deploy', await apiDir({ 'plumber.R': 'library(plumbdemo)\nlibrary(nosuchpkg42)\n#* @get /v\nfunction() 1\n' }), '--name', 'newer']);
    assert.equal(unknown.exitCode, 1);
    assert.match(unknown.stderr, /failed at "finding R packages": R package nosuchpkg42 cannot be installed: nosuchpkg42: not found in Debian's archive \(r-cran-nosuchpkg42, r-bioc-nosuchpkg42\) or http:\/\/10\.213\.0\.1:\d+/);
    assert.match(unknown.stderr, /the previous release is still serving/);

    // plumbextra builds, plumbbroken does not: neither may end up in the library.
    const broken = await user.plumb(['deploy', await apiDir({ 'plumber.R': 'library(plumbextra)\nlibrary(plumbbroken)\n#* @get /v\nfunction() 1\n' }), '--name', 'newer']);
    assert.equal(broken.exitCode, 1);
    assert.match(broken.stderr, /failed at "installing R packages \(source build\)": R package plumbbroken could not be installed from http:\/\/10\.213\.0\.1:\d+/);
    assert.match(broken.stderr, /installing \*source\* package ‘plumbbroken’/);
    assert.match(broken.stderr, /unexpected '\{'/);

    assert.deepEqual(await demoOf('newer'), { version: '2.0', generation: true });
    assert.equal(await onDroplet(['ls', '-A', '/var/plumber/newer/library']), libraryBefore);
    assert.doesNotMatch(await onDroplet(['ls', '-A', '/var/plumber/newer']), /staging/);
  });
  test('each release keeps the packages it was deployed with: 1.0, then 2.0, then a rollback loads 1.0 again; a set of packages is installed once', async () => {
    const first = await deploy({ ...demoApi, 'renv.lock': pinned('1.0') }, 'gens', ['--repo', repo.url]);
    assert.equal(first.exitCode, 0, first.stderr);
    assert.deepEqual(installedBy(first.result), ['plumbdemo source']);
    const one = await generationOf('gens');
    assert.match(one, GENERATION('gens'));

    const second = await deploy({ ...demoApi, 'renv.lock': pinned('2.0') }, 'gens', ['--wait']);
    assert.equal(second.exitCode, 0, second.stderr);
    assert.deepEqual(installedBy(second.result), ['plumbdemo source']);
    assert.deepEqual(await demoOf('gens'), { version: '2.0', generation: true });
    const two = await generationOf('gens');
    assert.notEqual(two, one, 'a new generation; the first is left as it was');
    assert.equal(await onDroplet(['sh', '-c', `grep '^Version' ${one}/plumbdemo/DESCRIPTION`]), 'Version: 1.0');

    const back = await user.plumb(['rollback', 'gens', '--wait']);
    assert.equal(back.exitCode, 0, back.stderr);
    assert.deepEqual(await demoOf('gens'), { version: '1.0', generation: true });
    assert.equal(await generationOf('gens'), one);

    // The 2.0 set again: its generation is there, so nothing is installed.
    const again = await deploy({ ...demoApi, 'renv.lock': pinned('2.0') }, 'gens');
    assert.equal(again.exitCode, 0, again.stderr);
    assert.deepEqual(installedBy(again.result), []);
    assert.doesNotMatch(again.stderr, /installing R packages/);
    assert.equal(await generationOf('gens'), two);

    // Generations go with the releases that named them.
    const kept = await deploy({ ...demoApi, 'renv.lock': pinned('2.0') }, 'gens', ['--keep', '1', '--wait']);
    assert.equal(kept.exitCode, 0, kept.stderr);
    const pruned = await deploy({ ...demoApi, 'renv.lock': pinned('2.0') }, 'gens', ['--wait']);
    assert.equal(pruned.exitCode, 0, pruned.stderr);
    // Old releases, and the generations only they named, go just after a deploy's answer (ops/prune.ts).
    const generation = two.slice(two.lastIndexOf('/') + 1);
    assert.deepEqual(await settled(() => onDroplet(['ls', '-A', '/var/plumber/gens/library']), (l) => l === generation), generation);
  });
});

/**
 * The warm spare (issue 14): on this droplet because a package change is what must send a
 * redeploy back to a cold start. entrypoint.R sets a serializer (only it makes answers unboxed),
 * data.txt is read by a relative path (the working directory), GREETING is an --env and
 * WARM_TOKEN a secret, and plumbenvseen's .onLoad reads GREETING as the package loads: each is
 * what a cold start gives, and each must hold for the spare too.
 */
describe('the warm spare (auto by default, --spare, --no-spare)', () => {
  // The APIs the tests above left (and their own spares) hold most of this 1 GiB droplet, and auto
  // rightly keeps no spare then ("auto: 129 MiB available, a spare takes ~101 MiB, 256 MiB kept
  // free"): these tests want the room a droplet with one API has.
  before(async () => {
    const rows = JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status?: StatusResult }>;
    for (const api of rows[0]?.status?.apis ?? []) assert.equal((await user.plumb(['remove', api.name, '--yes'])).exitCode, 0, `remove ${api.name}`);
  });
  const warmApi = (version: string, head = '', more = '') => ({
    'entrypoint.R': 'pr <- plumber::plumb("api.R")\npr$setSerializer(plumber::serializer_unboxed_json())\npr\n',
    'api.R': `${head}#* @get /v
function() list(version = "${version}", cwd = getwd(), greeting = Sys.getenv("GREETING"), token = Sys.getenv("WARM_TOKEN"), data = readLines("data.txt"), spareVar = Sys.getenv("PLUMB_SPARE", "unset"), pid = Sys.getpid()${more})
`,
    'data.txt': `data ${version}\n`,
  });
  /** The warm API of the first test: GREETING as plumbenvseen saw it when it loaded, too. */
  const seenApi = (version: string, head = '') => warmApi(version, `library(plumbenvseen)\n${head}`, ', atLoad = greeting_at_load()');
  interface WarmAnswer { version: string; cwd: string; greeting: string; token: string; data: string; spareVar: string; pid: number; atLoad?: string }
  // A long wait: R's first answer on a loaded droplet.
  const warmGet = async (api = 'warm') => JSON.parse((await httpGet(`http://${address}/${api}/v`, 60_000)).body) as unknown;
  const unitPid = async (port: number) => Number((await onDroplet(['systemctl', 'show', '-p', 'MainPID', '--value', `plumber-warm@${port}.service`])).trim());

  /** The API's spare once plumb status shows it waiting (readySpare). */
  const readySpare = (fits?: (spare: SpareShown) => boolean, name = 'warm') => waitingSpare(user, name, fits);

  test('by default (auto) a redeploy is served by the spare with the new code, --env (in plumber.R and in a package as it loads), secret, working directory and entrypoint.R of a cold start; an --env change starts cold and says why; a package change starts cold; plumb status shows the spare and its policy; one that crashed while waiting makes the next deploy start cold, not fail; --no-spare keeps none', async () => {
    const first = await deploy(seenApi('w1'), 'warm', ['--env', 'GREETING=hello', '--repo', repo.url]);
    assert.equal(first.exitCode, 0, first.stderr);
    const cold = (await warmGet()) as WarmAnswer;
    assert.deepEqual([cold.greeting, cold.atLoad], ['hello', 'hello'], 'a cold start: the package saw the --env as it loaded');
    // The secret set after the spare started: the spare starts again with it (else the next deploy would start cold).
    const set = await user.plumb(['secrets', 'set', 'warm', 'WARM_TOKEN', '--wait'], { input: 'tok-1\n' });
    assert.equal(set.exitCode, 0, set.stderr);
    const ready = await readySpare();
    const spare = ready.port;
    const sparePid = await unitPid(spare);
    // From R's start on: the --env and the secret are in the file systemd gave the spare's R.
    const spareEnv = await onDroplet(['cat', `/var/lib/plumb/instances/warm@${spare}.env`]);
    assert.match(spareEnv, /^GREETING="hello"$/m);
    assert.match(spareEnv, /^WARM_TOKEN="tok-1"$/m);
    assert.match((await user.plumb(['status'])).stdout, new RegExp(`^  warm: warm spare \\(auto\\) on port ${spare}, waiting, \\d+ MiB$`, 'm'));
    assert.equal(((JSON.parse((await user.plumb(['status', '--json'])).stdout) as Array<{ status: StatusResult }>)[0]?.status.apis.find((a) => a.name === 'warm'))?.sparePolicy, 'auto');

    const second = await deploy(seenApi('w2'), 'warm', ['--repo', repo.url]);
    assert.equal(second.exitCode, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`the warm spare on port ${spare} takes the release`));
    assert.deepEqual(second.result?.ports, [spare], 'the new release runs on the spare\'s port');
    const answer = (await warmGet()) as WarmAnswer;
    assert.deepEqual(
      { ...answer, pid: answer.pid === sparePid },
      { version: 'w2', cwd: `/var/plumber/warm/releases/${second.result?.release}`, greeting: 'hello', token: 'tok-1', data: 'data w2', spareVar: 'unset', pid: true, atLoad: 'hello' },
    );
    // plumber's docs as a cold start leaves them, for the release's own routes alone: the spare ran a
    // throwaway API through pr_run as it loaded (render/runner.ts), quietly, and kept nothing of it.
    const spec = JSON.parse((await httpGet(`http://${address}/warm/openapi.json`, 60_000)).body) as { paths: Record<string, unknown> };
    assert.deepEqual(Object.keys(spec.paths), ['/v']);
    assert.equal((await httpGet(`http://${address}/warm/__docs__/`, 60_000)).status, 200);
    // Still the worker unit systemd supervises: its process, and its lines in that unit's journal.
    assert.equal(await unitPid(spare), sparePid);
    // Its own process's lines: an earlier worker on the same port wrote in the same unit's journal.
    const spareLog = await onDroplet(['journalctl', `_PID=${sparePid}`, '-o', 'cat', '--no-pager']);
    // Its warm-up (a throwaway API run quietly, then its requests served in process) left nothing a
    // cold start would not have: not a line of its own in the journal (plumber says it runs once, for
    // the release; no request, warning or error), no second listening socket, no temporary file.
    assert.deepEqual(
      spareLog.trim().split('\n'),
      [SPARE_READY, `plumb: serving /var/plumber/warm/releases/${second.result?.release} on 127.0.0.1:${spare}`, `Running plumber API at http://127.0.0.1:${spare}`, `Running swagger Docs at http://127.0.0.1:${spare}/__docs__/`],
      'the spare wrote what a cold worker writes, and that it was ready',
    );
    const listening = (await onDroplet(['ss', '-Hltnp'])).split('\n').filter((l) => l.includes(`pid=${sparePid},`)).map((l) => l.trim().split(/\s+/)[3]);
    assert.deepEqual(listening, [`127.0.0.1:${spare}`], 'R listens on its own port only');
    // PrivateTmp: the process's own /tmp, R's session directory in it (a cold worker has one too) and nothing else.
    const temporary = (await onDroplet(['find', `/proc/${sparePid}/root/tmp`, '-mindepth', '1'])).trim().split('\n');
    assert.equal(temporary.length, 1, `R's temporary files: ${temporary.join(', ')}`);
    assert.match(temporary[0] ?? '', /\/tmp\/Rtmp\w+$/);

    // Another --env: the spare loaded its packages with the old one, so the release starts cold, and the step says why.
    const changedPid = await unitPid((await readySpare()).port);
    const changed = await deploy(seenApi('w2b'), 'warm', ['--env', 'GREETING=bonjour', '--repo', repo.url]);
    assert.equal(changed.exitCode, 0, changed.stderr);
    assert.match(changed.stderr, /cold: the warm spare was not used \(it started with another --env\)/);
    const afterEnv = (await warmGet()) as WarmAnswer;
    assert.deepEqual([afterEnv.version, afterEnv.greeting, afterEnv.atLoad, afterEnv.token], ['w2b', 'bonjour', 'bonjour', 'tok-1']);
    assert.notEqual(afterEnv.pid, changedPid, 'a new R process serves the release');

    // The code now needs a package the spare did not load, built from the repository into a generation
    // of the API's library: the spare goes and the release starts cold.
    const nextPid = await unitPid((await readySpare()).port);
    const third = await deploy(seenApi('w3', 'library(plumbdemo)\n'), 'warm', ['--repo', repo.url]);
    assert.equal(third.exitCode, 0, third.stderr);
    assert.match(third.stderr, /cold: the warm spare was not used \(it loaded other packages or settings\)/);
    const afterPackages0 = (await warmGet()) as WarmAnswer;
    assert.deepEqual([afterPackages0.version, afterPackages0.greeting, afterPackages0.token, afterPackages0.data], ['w3', 'bonjour', 'tok-1', 'data w3']);
    assert.notEqual(afterPackages0.pid, nextPid, 'a new R process serves the release');
    assert.equal((await onDroplet(['sh', '-c', `test -d /proc/${nextPid} && echo running || echo gone`])).trim(), 'gone', 'the spare that did not fit was stopped');
    // The next spare loads the new release's library generation (R_LIBS=/var/plumber/warm/library/g-HASH).
    const afterPackages = await readySpare();
    assert.match(await onDroplet(['cat', `/var/lib/plumb/instances/warm@${afterPackages.port}.env`]), /R_LIBS=\/var\/plumber\/warm\/library\/g-[0-9a-f]{16}/);

    // plumb status shows the spare as the user reads it: its port, waiting, its process and memory.
    assert.equal(afterPackages.pid, await unitPid(afterPackages.port));
    assert.ok((afterPackages.rssBytes ?? 0) > 10 * 1024 ** 2, `a spare holds R and plumber: ${afterPackages.rssBytes} bytes`);
    assert.match((await user.plumb(['status'])).stdout, new RegExp(`^  warm: warm spare \\(auto\\) on port ${afterPackages.port}, waiting, \\d+ MiB$`, 'm'));

    // Its R process killed while it waits: systemd starts it again and it waits once more, but the
    // next deploy (same packages: the spare would fit) starts cold instead of failing, and says so.
    await onDroplet(['kill', '-9', String(afterPackages.pid)]);
    const restarted = await readySpare((s) => s.pid !== afterPackages.pid);
    assert.equal(restarted.restarts, 1);
    assert.match((await user.plumb(['status'])).stdout, new RegExp(`^  warm: warm spare \\(auto\\) on port ${restarted.port}, waiting \\(crashed while waiting: the next deploy starts cold\\)`, 'm'));
    const fourth = await deploy(seenApi('w4', 'library(plumbdemo)\n'), 'warm', ['--repo', repo.url]);
    assert.equal(fourth.exitCode, 0, fourth.stderr);
    assert.match(fourth.stderr, /cold: the warm spare was not used \(it crashed while waiting\)/);
    const afterCrash = (await warmGet()) as WarmAnswer;
    assert.deepEqual([afterCrash.version, afterCrash.greeting, afterCrash.token, afterCrash.data], ['w4', 'bonjour', 'tok-1', 'data w4']);
    assert.notEqual(afterCrash.pid, restarted.pid, 'a new R process serves the release');

    // --no-spare: the spare goes with this deploy, none follows it, and the next deploy (the setting
    // is kept) starts cold without a word of a spare.
    await readySpare();
    const none = await deploy(seenApi('w5', 'library(plumbdemo)\n'), 'warm', ['--no-spare', '--repo', repo.url]);
    assert.equal(none.exitCode, 0, none.stderr);
    const after = await deploy(seenApi('w6', 'library(plumbdemo)\n'), 'warm', ['--repo', repo.url]);
    assert.equal(after.exitCode, 0, after.stderr);
    assert.doesNotMatch(`${none.stderr}${after.stderr}`, /warm spare/);
    assert.equal(((await warmGet()) as WarmAnswer).version, 'w6');
    const shown = (await user.plumb(['status'])).stdout;
    assert.match(shown, /^  warm: no warm spare \(--no-spare\)$/m);
    // The previous workers drain first.
    assert.equal(await settled(() => onDroplet(['sh', '-c', "systemctl list-units --plain --no-legend --state=active,activating 'plumber-warm@*.service' | wc -l"]).then((n) => n.trim()), (n) => n === '1'), '1', 'one worker, no spare');

    assert.equal((await user.plumb(['remove', 'warm', '--yes'])).exitCode, 0);
    assert.equal((await onDroplet(['sh', '-c', "systemctl list-units --plain --no-legend 'plumber-warm@*.service' | wc -l"])).trim(), '0', 'remove stops the spare too');
  });

  test(`a spare that ends as the deploy hands it the release makes that deploy start cold, not fail; one that crashes as it loads is said to, and after ${SPARE_CRASHES_ALERT} restarts plumb status shows a spare-crashing event`, async () => {
    const first = await deploy(warmApi('s1'), 'spry', ['--spare']);
    assert.equal(first.exitCode, 0, first.stderr);
    const spare = await readySpare(() => true, 'spry');

    // The lab's crash point (packages/agent/src/crash-point.ts): the agent SIGKILLs the spare after
    // it opened the spare's fifo and before it writes the release to it.
    await onDroplet(['sh', '-c', 'mkdir -p -m 0700 /var/lib/plumb/crash-points && touch /var/lib/plumb/crash-points/spare-handover']);
    const second = await deploy(warmApi('s2'), 'spry');
    assert.equal(second.exitCode, 0, second.stderr);
    assert.equal((await onDroplet(['ls', '-A', '/var/lib/plumb/crash-points'])).trim(), '', 'the crash point fired');
    assert.match(second.stderr, /cold: the warm spare was not used \(it ended before it took the release\)/);
    assert.ok(second.result !== undefined && !second.result.ports.includes(spare.port), `a worker of its own, not the killed spare's unit: ${JSON.stringify(second.result?.ports)}`);
    const cold = (await warmGet('spry')) as WarmAnswer;
    assert.deepEqual([cold.version, cold.data, cold.spareVar], ['s2', 'data s2', 'unset']);
    assert.notEqual(cold.pid, spare.pid);

    // The release now loads a package that ends R in a spare: the next spare crashes as it loads,
    // again and again. The monitor says so once, in the events plumb status lists.
    const third = await deploy(warmApi('s3', 'library(plumbspareless)\n'), 'spry', ['--repo', repo.url]);
    assert.equal(third.exitCode, 0, third.stderr);
    const shown = await pollUntil(
      async () => {
        const out = (await user.plumb(['status'])).stdout;
        return /spare-crashing/.test(out) ? out : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    assert.ok(shown !== undefined, 'plumb status lists a spare-crashing event');
    assert.match(shown, /spare-crashing\s+spry\s+its warm spares restarted \d+ times since one last took a release/);
    assert.match(shown, /^  spry: warm spare \(--spare\) on port \d+, \w+ \(crashed( \d+ times)? while loading: the next deploy starts cold\)/m);

    const fourth = await deploy(warmApi('s4', 'library(plumbspareless)\n'), 'spry');
    assert.equal(fourth.exitCode, 0, fourth.stderr);
    assert.match(fourth.stderr, /cold: the warm spare was not used \(it crashed( \d+ times)? while loading\)/);
    assert.equal(((await warmGet('spry')) as WarmAnswer).version, 's4');
    assert.equal((await user.plumb(['remove', 'spry', '--yes'])).exitCode, 0);
  });

  test('a redeploy right after the last finds the spare still loading, waits for it and hands it the release instead of starting cold', async () => {
    const slowApi = (version: string) => warmApi(version, 'library(plumbslowload)\n', ', loaded = slow()');
    const first = await deploy(slowApi('l1'), 'slowly', ['--repo', repo.url]);
    assert.equal(first.exitCode, 0, first.stderr);
    // At once: the spare started behind the first deploy's answer is still in plumbslowload's 5 s .onLoad.
    const second = await deploy(slowApi('l2'), 'slowly', ['--repo', repo.url]);
    assert.equal(second.exitCode, 0, second.stderr);
    assert.match(second.stderr, /the warm spare on port \d+ takes the release \(after \d+\.\d s waiting for it to finish loading\)/);
    const answer = (await warmGet('slowly')) as WarmAnswer & { loaded: string };
    assert.deepEqual([answer.version, answer.loaded, answer.data], ['l2', 'loaded', 'data l2']);
    assert.equal((await user.plumb(['remove', 'slowly', '--yes'])).exitCode, 0);
  });
});
