import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { apiUser } from '@plumb/shared';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { plumbUser, provisionDroplet, type PlumbUser } from './plumb.js';

/**
 * Real plumber APIs write where they run: beside their code (for the life of the release), in
 * their HOME and in tempdir(), each as its own system user, and nowhere else. One lab droplet.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;

/** Writes logs/ at start and a line per /count; the other endpoints try what an API should not do. */
const writerApi = (version: string) => ({
  'plumber.R': `
dir.create("logs", showWarnings = FALSE)

attempt <- function(what) tryCatch({ what; "done" },
  warning = function(w) paste("refused:", conditionMessage(w)),
  error = function(e) paste("refused:", conditionMessage(e)))

#* @get /count
#* @serializer unboxedJSON
function() {
  cat(format(Sys.time()), "\\n", sep = "", file = "logs/requests.log", append = TRUE)
  length(readLines("logs/requests.log"))
}

#* @get /version
#* @serializer unboxedJSON
function() "${version}"

#* @get /write
#* @serializer unboxedJSON
function(path) attempt(writeLines("written by the API", path))

#* @get /remove
#* @serializer unboxedJSON
function(path) attempt(if (!file.remove(path)) stop("not removed"))

#* @get /read
#* @serializer unboxedJSON
function(path) attempt(readBin(path, "raw", 65536))

#* @get /cores
#* @serializer unboxedJSON
function() as.character(parallel::detectCores())

#* @get /caches
#* @serializer unboxedJSON
function() {
  dir <- tools::R_user_dir("x", "cache")
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  marker <- file.path(dir, "marker")
  before <- if (file.exists(marker)) readLines(marker) else ""
  writeLines("${version}", marker)
  scratch <- tempfile()
  writeLines("temporary", scratch)
  list(home = Sys.getenv("HOME"), cache = dir, before = before, after = readLines(marker), tempdir = tempdir(), temp = readLines(scratch))
}
`,
  'shipped.txt': 'shipped with the bundle\n',
  'static/page.txt': 'a shipped file in a shipped directory\n',
});

/** Longer than useradd takes with the prefix: its user is a cut name and a hash. */
const OTHER = 'other-api-with-a-rather-long-name';
const SECRET = 'hunter2-do-not-leak';

const get = (urlPath: string) => httpGet(`http://${address}${urlPath}`, 10_000);
async function json(urlPath: string): Promise<unknown> {
  const answer = await get(urlPath);
  assert.equal(answer.status, 200, `${urlPath}: ${answer.status} ${answer.body}`);
  return JSON.parse(answer.body) as unknown;
}
const attempt = (what: 'write' | 'remove' | 'read', file: string) => json(`/writer/${what}?path=${encodeURIComponent(file)}`) as Promise<string>;
const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv, { timeoutMs: 60_000 });
const sh = (script: string) => onDroplet(['sh', '-c', script]);

/**
 * An API's one worker: its unit, port and R process. Asked of systemd, not the agent (a test stops
 * it): the active unit enabled at boot, which a warm spare (plumber-NAME@PORT too) is not.
 */
async function worker(name: string): Promise<{ unit: string; port: number; pid: number; user: string }> {
  const unit = (await sh(`for u in $(systemctl list-units --no-legend --plain --state=active 'plumber-${name}@*' | cut -d' ' -f1); do [ "$(systemctl is-enabled "$u")" = enabled ] && echo "$u"; done; true`)).split('\n')[0] ?? '';
  const port = Number(/@(\d+)\.service$/.exec(unit)?.[1]);
  const pid = Number(await onDroplet(['systemctl', 'show', '-p', 'MainPID', '--value', unit]));
  return { unit, port, pid, user: await onDroplet(['ps', '-o', 'user=', '-p', String(pid)]) };
}

async function deploy(dir: string, name: string, ...flags: string[]): Promise<void> {
  const deployed = await user.plumb(['deploy', dir, '--name', name, ...flags]);
  assert.equal(deployed.exitCode, 0, deployed.stderr);
}

let writerV1: string;

before(async () => {
  lab = await startLab();
  user = await plumbUser(lab);
  ({ id: dropletId, address } = await provisionDroplet(user, 'writable'));
  writerV1 = await apiDir(writerApi('v1'));
  await deploy(writerV1, 'writer');
  await deploy(await apiDir(sumApi('other')), OTHER, '--env', `SECRET_TOKEN=${SECRET}`);
});

after(async () => {
  await lab?.stop();
});

describe('an API writes where it runs', () => {
  test('an API that makes logs/ at start and appends a line per request serves and counts, as its own user', async () => {
    assert.equal(await json('/writer/count'), 1);
    assert.equal(await json('/writer/count'), 2);
    assert.equal(await json('/writer/count'), 3);
    assert.equal(await sh('wc -l < /var/plumber/writer/current/logs/requests.log'), '3');
    assert.equal(await sh('stat -c "%U %a" /var/plumber/writer/current/logs/requests.log'), 'plumber-writer 600');
    assert.equal((await worker('writer')).user, 'plumber-writer');
    const other = await worker(OTHER);
    assert.equal(apiUser(OTHER).length, 31, 'a long name\'s user is cut to the 31 characters systemd takes');
    assert.equal(await sh(`stat -c %U /proc/${other.pid}`), apiUser(OTHER));
  });

  test('overwriting its own plumber.R or deleting a shipped file is refused by the system; the API keeps serving, the files unchanged', async () => {
    const shipped = async () => sh('cd /var/plumber/writer/current && sha256sum plumber.R shipped.txt static/page.txt && stat -c "%U %a %n" plumber.R shipped.txt static/page.txt');
    const before = await shipped();
    assert.match(await attempt('write', 'plumber.R'), /^refused: .*Permission denied/);
    assert.match(await attempt('write', 'shipped.txt'), /^refused: .*Permission denied/);
    assert.match(await attempt('remove', 'shipped.txt'), /^refused: .*Operation not permitted/);
    assert.match(await attempt('remove', 'plumber.R'), /^refused: .*Operation not permitted/);
    assert.match(await attempt('remove', 'static/page.txt'), /^refused: .*Operation not permitted/);
    assert.match(await attempt('remove', 'static'), /^refused: /);
    assert.equal(await attempt('write', 'static/made-by-the-api.txt'), 'done', 'a shipped directory takes new files');
    assert.equal(await shipped(), before);
    const local = createHash('sha256').update(await readFile(path.join(writerV1, 'plumber.R'))).digest('hex');
    assert.match(before, new RegExp(`^${local}  plumber\\.R$`, 'm'), 'plumber.R on the droplet is the one uploaded');
    assert.match(before, /^root 644 plumber\.R$/m);
    assert.equal(await json('/writer/count'), 4);
  });

  test('tools::R_user_dir() under the API\'s own HOME and tempdir() write and read back; tempdir() is private to the worker', async (t) => {
    t.diagnostic(`parallel::detectCores() under ProcSubset=pid: ${String(await json('/writer/cores'))}`);
    const caches = (await json('/writer/caches')) as Record<string, string>;
    assert.equal(caches['home'], '/var/plumber/writer/home');
    assert.equal(caches['cache'], '/var/plumber/writer/home/.cache/R/x');
    assert.equal(caches['after'], 'v1');
    assert.equal(caches['temp'], 'temporary');
    assert.match(caches['tempdir'] ?? '', /^\/tmp\/Rtmp/);
    assert.equal(await sh('stat -c "%U %a" /var/plumber/writer/home /var/plumber/writer/home/.cache/R/x/marker'), 'plumber-writer 700\nplumber-writer 600');
    assert.equal(await sh(`test -e ${caches['tempdir']} && echo visible || echo private`), 'private', 'the droplet\'s /tmp does not hold the worker\'s tempdir()');
  });

  test('writing to another API\'s files, /etc, /var/lib/plumb or its own API directory is refused', async () => {
    const targets = [`/var/plumber/${OTHER}/data/x`, `/var/plumber/${OTHER}/home/x`, `/var/plumber/${OTHER}/current/x`, `/var/plumber/${OTHER}/x`, '/var/plumber/x', '/var/plumber/writer/x', '/var/plumber/writer/releases/x', '/etc/plumb-test', '/var/lib/plumb/x', '/var/lib/plumb/instances/x'];
    for (const target of targets) assert.match(await attempt('write', target), /^refused: /, target);
    assert.equal(await attempt('write', '/var/plumber/writer/data/kept.txt'), 'done', 'data/ is writable');
    assert.equal(await sh(`ls -d ${targets.join(' ')} 2>/dev/null || true`), '');
    assert.equal(await sh('stat -c "%U:%G %a" /var/plumber /var/plumber/writer /var/plumber/writer/releases /var/plumber/writer/data'), 'root:root 755\nroot:plumber-writer 750\nroot:root 755\nplumber-writer:plumber-writer 700');
  });

  test('another API\'s environment, env file, code and state are unreadable; its own environment is', async () => {
    const other = await worker(OTHER);
    assert.match(await sh(`tr '\\0' '\\n' < /proc/${other.pid}/environ`), new RegExp(`^SECRET_TOKEN=${SECRET}$`, 'm'), 'root sees the secret: the pid is right');
    assert.equal(await attempt('read', '/proc/self/environ'), 'done');
    for (const target of [`/proc/${other.pid}/environ`, `/var/lib/plumb/instances/${OTHER}@${other.port}.env`, `/var/plumber/${OTHER}/current/plumber.R`, '/var/lib/plumb/state.json', '/etc/plumb-agent/config.json']) {
      assert.match(await attempt('read', target), /^refused: /, target);
    }
  });

  test('a redeploy starts from its bundle with no logs/; the old release keeps its own; HOME and data/ carry over', async () => {
    const old = await sh('readlink -f /var/plumber/writer/current');
    await deploy(await apiDir(writerApi('v2')), 'writer');
    assert.equal(await json('/writer/version'), 'v2');
    assert.equal(await json('/writer/count'), 1);
    assert.notEqual(await sh('readlink -f /var/plumber/writer/current'), old);
    assert.equal(await sh(`wc -l < ${old}/logs/requests.log`), '4');
    const caches = (await json('/writer/caches')) as Record<string, string>;
    assert.equal(caches['before'], 'v1');
    assert.equal(await sh('cat /var/plumber/writer/data/kept.txt'), 'written by the API');
  });
});

describe('the unit', () => {
  test('systemd-analyze verifies it without a warning; its security exposure is recorded', async (t) => {
    const { unit } = await worker('writer');
    assert.equal(await sh(`systemd-analyze verify ${unit} 2>&1`), '');
    const security = await sh(`systemd-analyze security --no-pager ${unit} 2>&1 | tail -n 1`);
    t.diagnostic(security);
    assert.match(security, /Overall exposure level for plumber-writer@\d+\.service: \d+\.\d+ (OK|SAFE)/);
  });
});

describe('users come and go with their API', () => {
  test('an API deployed before each had its own user moves to its own on the agent\'s start, with no failed request', async () => {
    await deploy(await apiDir(sumApi('legacy')), 'legacy');
    // What a droplet of the earlier plumb had: workers as `plumber`, its files root's or plumber's.
    await sh(
      [
        'set -e',
        'systemctl stop plumb-agent',
        "sed -i 's/^User=.*/User=plumber/; s/^Group=.*/Group=plumber/' /etc/systemd/system/plumber-legacy@.service",
        'chown root:root /var/plumber/legacy && chmod 0755 /var/plumber/legacy',
        'chown -R plumber:plumber /var/plumber/legacy/data /var/plumber/legacy/home',
        'find /var/plumber/legacy/releases -mindepth 1 -type d -exec chown root:root {} + -exec chmod 0755 {} +',
        'systemctl daemon-reload',
        "systemctl restart 'plumber-legacy@*'",
      ].join('\n'),
    );
    const until = Date.now() + 30_000;
    while ((await get('/legacy/version').catch(() => ({ status: 0 }))).status !== 200 && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    assert.equal((await worker('legacy')).user, 'plumber');

    let failed = 0;
    let served = 0;
    let moved = false;
    await onDroplet(['systemctl', 'start', 'plumb-agent']);
    const deadline = Date.now() + 90_000;
    while (!moved && Date.now() < deadline) {
      const answer = await get('/legacy/version').catch(() => ({ status: 0, body: '' }));
      if (answer.status === 200 && answer.body === '["legacy"]') served++;
      else failed++;
      moved = (await worker('legacy').catch(() => ({ user: '' }))).user === 'plumber-legacy';
    }
    assert.ok(moved, 'the worker runs as plumber-legacy');
    assert.equal(failed, 0, `${failed} of ${failed + served} requests failed during the move`);
    assert.equal(await sh('stat -c "%U:%G %a" /var/plumber/legacy /var/plumber/legacy/data /var/plumber/legacy/current/'), 'root:plumber-legacy 750\nplumber-legacy:plumber-legacy 700\nroot:plumber-legacy 1770');
  });

  test('plumb remove takes the API\'s user with its files; --keep-files keeps both', async () => {
    const removed = await user.plumb(['remove', OTHER, '--yes']);
    assert.equal(removed.exitCode, 0, removed.stderr);
    assert.equal(await sh(`getent passwd ${apiUser(OTHER)} || echo gone`), 'gone');
    const kept = await user.plumb(['remove', 'legacy', '--keep-files', '--yes']);
    assert.equal(kept.exitCode, 0, kept.stderr);
    assert.match(await sh('getent passwd plumber-legacy'), /^plumber-legacy:x:\d+:\d+:plumb API legacy:\/var\/plumber\/legacy\/home:\/usr\/sbin\/nologin$/);
    assert.equal(await sh('stat -c %U /var/plumber/legacy/data'), 'plumber-legacy');
  });
});
