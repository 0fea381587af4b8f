import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { compareRVersions, parseDcf, R_PACKAGES_MAX, R_REPO_INDEX_MAX_BYTES, ValidationError, type RPackageNeed } from '@plumb/shared';
import { detectDependencies, fromDescription, fromRenvLock, scanRCode } from '@plumb/controller/api-dir/r-deps';
import { planPackages } from '@plumb/agent/ops/packages';
import { outputAbout, readRepoIndex, upstreamVersion, type DebianCandidate, type RepoPackage } from '@plumb/agent/system/r-packages';
import { PLUMB_CLI } from '../e2e/plumb.js';

/** R package detection (controller) and the install plan (agent): pure functions on file contents and facts. */

const names = (code: string) => [...scanRCode(code).packages.keys()].sort();
const features = (code: string) => Object.fromEntries(scanRCode(code).features);

describe('the code scan', () => {
  test('finds library(), require(), requireNamespace(), loadNamespace(), with names or strings', () => {
    const code = `
library(dplyr)
require("data.table")
if (!requireNamespace('jsonlite', quietly = TRUE)) stop()
ns <- loadNamespace(package = "DBI")
suppressPackageStartupMessages(library(sf, warn.conflicts = FALSE))
`;
    assert.deepEqual(names(code), ['DBI', 'data.table', 'dplyr', 'jsonlite', 'sf']);
  });

  test('finds pkg::fn and pkg:::fn, also inside functions and nested calls', () => {
    const code = `
#* @get /x
function(req) {
  out <- digest::digest(req$body)
  f <- function() base64enc:::base64encode(charToRaw("x"))
  list(a = lubridate::ymd("2026-01-01"), b = f())
}
`;
    assert.deepEqual(names(code), ['base64enc', 'digest', 'lubridate']);
  });

  test('ignores comments, strings and variables passed with character.only', () => {
    const code = `
# library(commented)
x <- "readr::read_csv and library(instring)"
y <- r"(library(rawstring))"
for (p in pkgs) library(p, character.only = TRUE)
library("named", character.only = TRUE)  # a string still counts
z <- 'it''s' # library(also_commented)
`;
    assert.deepEqual(names(code), ['named']);
  });

  test('the base packages are dropped; recommended ones (Debian ships them apart) are kept', () => {
    const detected = detectDependencies({ 'plumber.R': 'stats::lm(y ~ x)\nutils::head(1)\nlibrary(methods)\nMASS::rlm\nlibrary(Matrix)\n' });
    assert.deepEqual(detected.needs.map((n) => n.name), ['MASS', 'Matrix']);
    assert.equal(detected.source, 'code');
  });

  test("plumber's optional features add the packages plumber only suggests", () => {
    const code = `
#* @serializer csv
#* @get /a
function() data.frame(x = 1)
#* @parser feather
#* @post /b
function(req) 1
pr() |> pr_cookie(key, name = "s") |> pr_set_docs("redoc")
p <- promises::future_promise(slow())
h <- serializer_excel()
`;
    assert.deepEqual(features(code), {
      readr: 'the csv serializer',
      arrow: 'the feather parser',
      sodium: 'encrypted session cookies (pr_cookie)',
      base64enc: 'encrypted session cookies (pr_cookie)',
      redoc: 'the redoc docs',
      future: 'async with future_promise',
      writexl: 'the excel serializer',
    });
    const detected = detectDependencies({ 'plumber.R': code });
    assert.deepEqual(detected.needs.map((n) => n.name), ['arrow', 'base64enc', 'future', 'promises', 'readr', 'redoc', 'sodium', 'writexl']);
    assert.equal(detected.needs.find((n) => n.name === 'future')?.reason, 'plumber.R: async with future_promise');
  });

  test('every .R file counts, but not renv/ and packrat/ (their own machinery)', () => {
    const detected = detectDependencies({ 'plumber.R': 'source("R/helpers.R")\n', 'R/helpers.R': 'library(glue)\n', 'renv/activate.R': 'library(utils2)\n', 'notes.txt': 'library(nope)' });
    assert.deepEqual(detected.needs, [{ name: 'glue', version: null, reason: 'R/helpers.R: library(glue)' }]);
  });
});

describe('DESCRIPTION and renv.lock', () => {
  test('DESCRIPTION: Depends, Imports and LinkingTo with their versions; R itself dropped', () => {
    const text = `Package: myapi
Version: 0.1
Depends: R (>= 4.1), stats
Imports:
    dplyr (>= 1.1.0),
    jsonlite,
    DBI (== 1.2.3)
LinkingTo: Rcpp
Suggests: testthat
`;
    assert.deepEqual(fromDescription(text).needs, [
      { name: 'DBI', version: { op: '==', version: '1.2.3' }, reason: 'DESCRIPTION Imports' },
      { name: 'dplyr', version: { op: '>=', version: '1.1.0' }, reason: 'DESCRIPTION Imports' },
      { name: 'jsonlite', version: null, reason: 'DESCRIPTION Imports' },
      { name: 'Rcpp', version: null, reason: 'DESCRIPTION LinkingTo' },
    ]);
  });

  test('DESCRIPTION: an unreadable entry is a one-line error naming it', () => {
    assert.throws(() => fromDescription('Imports: dplyr >= 1.0\n'), (err: unknown) => err instanceof ValidationError && /cannot read "dplyr >= 1.0" in Imports/.test(err.message));
  });

  test('renv.lock: each package pinned to its version; renv left out; other sources noted', () => {
    const lock = JSON.stringify({
      R: { Version: '4.3.1' },
      Packages: {
        renv: { Package: 'renv', Version: '1.0.3', Source: 'Repository' },
        digest: { Package: 'digest', Version: '0.6.33', Source: 'Repository', Repository: 'CRAN' },
        mypkg: { Package: 'mypkg', Version: '0.0.1', Source: 'GitHub', RemoteUsername: 'me', RemoteRepo: 'mypkg' },
      },
    });
    const detected = fromRenvLock(lock);
    assert.deepEqual(detected.needs, [
      { name: 'digest', version: { op: '==', version: '0.6.33' }, reason: 'renv.lock' },
      { name: 'mypkg', version: { op: '==', version: '0.0.1' }, reason: 'renv.lock' },
    ]);
    assert.equal(detected.rVersion, '4.3.1');
    assert.match(detected.notes.join('\n'), /mypkg: renv.lock says it came from GitHub me\/mypkg/);
    assert.throws(() => fromRenvLock('{not json'), ValidationError);
  });

  test('renv.lock wins over DESCRIPTION, which wins over the code', () => {
    const files = { 'plumber.R': 'library(a1)\n', DESCRIPTION: 'Imports: b1\n', 'renv.lock': '{"Packages": {"c1": {"Package": "c1", "Version": "1.0"}}}' };
    assert.deepEqual(detectDependencies(files).needs.map((n) => n.name), ['c1']);
    const { 'renv.lock': _lock, ...withoutLock } = files;
    assert.deepEqual(detectDependencies(withoutLock).needs.map((n) => n.name), ['b1']);
    const { DESCRIPTION: _description, ...codeOnly } = withoutLock;
    assert.deepEqual(detectDependencies(codeOnly).needs.map((n) => n.name), ['a1']);
  });

  test("R's version order and DCF", () => {
    assert.equal(compareRVersions('1.10.0', '1.9.9'), 1);
    assert.equal(compareRVersions('0.6-1', '0.6.1'), 0);
    assert.equal(compareRVersions('1.0', '1.0.1'), -1);
    assert.deepEqual(parseDcf('Package: a\nImports: b,\n  c\n\nPackage: d\n'), [{ Package: 'a', Imports: 'b,\nc' }, { Package: 'd' }]);
  });
});

describe('the install plan on the droplet', () => {
  const apiLibrary = '/var/plumber/x/library';
  const need = (name: string, version: RPackageNeed['version'] = null): RPackageNeed => ({ name, version, reason: 'plumber.R' });
  const lookups = (debian: Record<string, string>, repo: Record<string, Partial<RepoPackage>>) => ({
    debian: async (ns: string[]) => new Map(ns.filter((n) => debian[n]).map((n): [string, DebianCandidate] => [n, { deb: `r-cran-${n.toLowerCase()}`, debVersion: debian[n]! }])),
    index: async () => new Map(Object.entries(repo).map(([n, p]): [string, RepoPackage] => [n, { name: n, version: '1.0', dependencies: [], needsCompilation: false, ...p }])),
  });
  const libraries = (installed: Record<string, [string, string]>) => ({ rVersion: '4.5.0', installed: new Map(Object.entries(installed).map(([n, [version, library]]) => [n, { version, library }])) });
  const repos = { source: 'http://repo', binary: null };

  test('what is there stays; Debian first; the rest from the repository, with their dependencies (Debian first again)', async () => {
    const plan = await planPackages(
      [need('jsonlite'), need('digest'), need('mine')],
      libraries({ jsonlite: ['2.0.0', '/usr/lib/R/site-library'] }),
      apiLibrary,
      repos,
      lookups({ digest: '0.6.37-1', glue: '1.8.0-1' }, { mine: { version: '2.0', dependencies: ['glue', 'other', 'jsonlite', 'stats'] }, other: { version: '0.1' } }),
      false,
    );
    assert.deepEqual(
      plan.items.map((i) => [i.name, i.action, i.version, i.dependency]),
      [
        ['jsonlite', 'present', '2.0.0', false],
        ['digest', 'debian', '0.6.37', false],
        ['mine', 'source', '2.0', false],
        ['glue', 'debian', '1.8.0', true],
        ['other', 'source', '0.1', true],
      ],
    );
    assert.deepEqual(plan.errors, []);
  });

  test('a pinned version the repository no longer lists comes from its Archive; one in the API library at another version is replaced', async () => {
    const plan = await planPackages([need('mine', { op: '==', version: '1.0' })], libraries({ mine: ['2.0', apiLibrary] }), apiLibrary, repos, lookups({}, { mine: { version: '2.0' } }), false);
    assert.equal(plan.items[0]?.action, 'source');
    assert.equal(plan.items[0]?.version, '1.0');
    assert.equal((plan.items[0] as { archiveUrl?: string }).archiveUrl, 'http://repo/src/contrib/Archive/mine/mine_1.0.tar.gz');
  });

  test("Debian's version is kept when it differs from renv.lock's: a warning, or with --strict-versions an error", async () => {
    const facts = [[need('jsonlite', { op: '==', version: '1.8.4' })], libraries({ jsonlite: ['2.0.0', '/usr/lib/R/site-library'] }), apiLibrary, repos, lookups({}, {})] as const;
    const loose = await planPackages(...facts, false);
    assert.equal(loose.items[0]?.action, 'present');
    assert.deepEqual(loose.warnings, ['jsonlite: plumber.R asks for == 1.8.4, the droplet has 2.0.0']);
    const strict = await planPackages(...facts, true);
    assert.deepEqual(strict.errors, loose.warnings);
  });

  test('a package in neither Debian nor the repository is an error naming it and where it was looked for', async () => {
    const plan = await planPackages([need('nosuch')], libraries({}), apiLibrary, repos, lookups({}, {}), false);
    assert.equal(plan.items[0]?.action, 'missing');
    assert.deepEqual(plan.errors, ["nosuch: not found in Debian's archive (r-cran-nosuch, r-bioc-nosuch) or http://repo"]);
    const unreachable = await planPackages([need('nosuch')], libraries({}), apiLibrary, repos, { ...lookups({}, {}), index: () => Promise.reject(new Error('connection refused')) }, false);
    assert.match(unreachable.errors[0] ?? '', /nosuch: not found in Debian's archive .*; http:\/\/repo could not be read \(connection refused\)/);
  });

  test("Debian's versions and R's install output", () => {
    assert.equal(upstreamVersion('0.1-3-3'), '0.1-3');
    assert.equal(upstreamVersion('1:2.0.0+dfsg-1'), '2.0.0');
    const out = ['trying URL x', '* installing *source* package ‘a’ ...', 'ERROR: parse', '* removing ‘/s/a’', '* installing *source* package ‘b’ ...', '* DONE (b)'];
    assert.deepEqual(outputAbout(out, 'a'), ['* installing *source* package ‘a’ ...', 'ERROR: parse', '* removing ‘/s/a’']);
  });
});

describe(`at most ${R_PACKAGES_MAX} R packages for one API`, () => {
  /** `plumb deps DIR --local` as a user runs it, for an API whose code loads `count` packages. */
  async function depsOf(count: number, flags: string[] = []) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-many-'));
    const loads = Array.from({ length: count }, (_, i) => `library(pkg${i})\n`).join('');
    await writeFile(path.join(dir, 'plumber.R'), `${loads}#* @get /x\nfunction() 1\n`);
    return execa(process.execPath, [PLUMB_CLI, 'deps', dir, '--local', ...flags], { env: { XDG_CONFIG_HOME: dir, XDG_CACHE_HOME: path.join(dir, 'cache') }, reject: false });
  }

  test(`${R_PACKAGES_MAX} are listed; one more is refused in one line, with what to do (exit 2)`, async () => {
    const most = await depsOf(R_PACKAGES_MAX, ['--json']);
    assert.equal(most.exitCode, 0, most.stderr);
    assert.equal((JSON.parse(most.stdout) as { needs: unknown[] }).needs.length, R_PACKAGES_MAX);
    const over = await depsOf(R_PACKAGES_MAX + 1);
    assert.equal(over.exitCode, 2);
    assert.equal(over.stderr, `plumb: the API needs ${R_PACKAGES_MAX + 1} R packages (from its code); plumb installs at most ${R_PACKAGES_MAX} for one API\n  deploy with --no-deps and install them on the droplet yourself, or split the API`);
  });
});

describe(`a repository's index is read up to ${R_REPO_INDEX_MAX_BYTES} bytes`, () => {
  /**
   * A CRAN-like repository on loopback whose src/contrib/PACKAGES is one package record padded to
   * `bytes`, sent without a length (chunked); `endless` goes on sending until the reader hangs up.
   */
  async function repository(bytes: number, endless = false) {
    const record = Buffer.from('Package: a\nVersion: 1.0\nDescription: ');
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let sent = 0;
    const server = http.createServer((_req, res) => {
      const more = () => {
        while (endless || sent < bytes) {
          const piece = sent === 0 ? record : chunk.subarray(0, endless ? chunk.length : Math.min(chunk.length, bytes - sent));
          sent += piece.length;
          if (!res.write(piece)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('close', () => server.close());
      more();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sent: () => sent };
  }

  test('an index of exactly the limit is read; one byte more is refused', async () => {
    const at = await repository(R_REPO_INDEX_MAX_BYTES);
    assert.deepEqual([...(await readRepoIndex(at.url)).keys()], ['a']);
    const over = await repository(R_REPO_INDEX_MAX_BYTES + 1);
    await assert.rejects(readRepoIndex(over.url), { message: `${over.url}/src/contrib/PACKAGES is over ${R_REPO_INDEX_MAX_BYTES} bytes` });
  });

  test('an index that never ends is refused once past the limit, not read until the timeout', async () => {
    const endless = await repository(0, true);
    await assert.rejects(readRepoIndex(endless.url), /is over/);
    assert.ok(endless.sent() < 2 * R_REPO_INDEX_MAX_BYTES, `${endless.sent()} bytes sent`);
  });
});
