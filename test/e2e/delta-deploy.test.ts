import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { AGENT_PORT, type BundleFile, type DeployResult } from '@plumb/shared';
import { AgentConnection, RemoteError } from '@plumb/controller/agent/client';
import { bundleManifest, inspectApiDir } from '@plumb/controller/api-dir/bundle';
import { loadSigningKey } from '@plumb/controller/local/keys';
import { tokenFor } from '@plumb/controller/agent/tokens';
import { rawTar, type RawEntry } from '../cases/raw-tar.js';
import type { Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { sharedDroplet, type PlumbUser } from './plumb.js';

/**
 * Redeploys that send only what changed: the controller sends the file list with hashes, the
 * agent asks for the files it has in none of the API's kept releases, and builds the release from
 * those plus links to the rest. What users check: bytes on the wire, the API answering the new
 * code, the release on the droplet the same as a whole upload makes it; and a hostile file list
 * changing nothing.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;

const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
const MODEL_BYTES = 50 * 1024 * 1024;
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

interface DeployJson extends DeployResult {
  bundleBytes: number;
  upload: { mode: 'full' | 'delta'; files: number; totalFiles: number; bytes: number };
}

async function deployJson(dir: string, name: string, ...flags: string[]): Promise<DeployJson> {
  const run = await user.plumb(['deploy', dir, '--name', name, '--no-deps', '--json', ...flags]);
  assert.equal(run.exitCode, 0, run.stderr);
  return JSON.parse(run.stdout) as DeployJson;
}

/** Every entry of a release as a user would list it: path, type, mode, owner, and each file's sha256. */
async function listing(name: string, release: string): Promise<string> {
  const dir = `/var/plumber/${name}/releases/${release}`;
  return onDroplet(['sh', '-c', `cd ${dir} && find . -mindepth 1 -printf '%P %y %m %u:%g\\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum`]);
}

/** An API with a big data file (random: no compression helps), a script and code in a subdirectory. */
async function bigApi(): Promise<string> {
  const dir = await apiDir({ ...sumApi('v1'), 'R/helpers.R': 'helper <- function() 42\n', 'bin/tool.sh': '#!/bin/sh\necho tool\n' });
  await chmod(path.join(dir, 'bin/tool.sh'), 0o755);
  await mkdir(path.join(dir, 'data'));
  await writeFile(path.join(dir, 'data/model.bin'), randomBytes(MODEL_BYTES));
  return dir;
}

sharedDroplet('delta', (shared) => void ({ lab, user, id: dropletId, address } = shared));

describe('only changed bytes travel', () => {
  test('deploy: a one-line change to an API with a 50 MB file sends under 1 MB, and the release is byte for byte what a full upload makes', async () => {
    const dir = await bigApi();
    const first = await deployJson(dir, 'model');
    assert.equal(first.upload.mode, 'delta');
    assert.equal(first.upload.files, first.upload.totalFiles, 'a first deploy sends every file');
    assert.ok(first.upload.bytes > MODEL_BYTES, `the first deploy sent the model (${first.upload.bytes} bytes)`);

    await writeFile(path.join(dir, 'plumber.R'), sumApi('v2')['plumber.R']);
    const changed = await deployJson(dir, 'model');
    assert.equal(changed.upload.mode, 'delta');
    assert.equal(changed.upload.files, 1, 'only plumber.R travelled');
    assert.ok(changed.upload.bytes < 1024 * 1024, `under 1 MB sent (${changed.upload.bytes} bytes)`);
    assert.equal(changed.reusedFiles, changed.upload.totalFiles - 1);
    assert.equal((await httpGet(`http://${address}/model/version`, 30_000)).body, '["v2"]');

    const full = await deployJson(dir, 'model', '--full');
    assert.equal(full.upload.mode, 'full');
    assert.ok(full.bundleBytes > MODEL_BYTES, `--full sent everything (${full.bundleBytes} bytes)`);
    const fromDelta = await listing('model', changed.release);
    assert.equal(fromDelta, await listing('model', full.release));
    // And it is the user's directory: same files, same hashes; root's, read-only to the API (issue 17's layout).
    const local = await bundleManifest(dir, await inspectApiDir(dir));
    for (const f of local) assert.ok(fromDelta.includes(`${f.sha256}  ./${f.path}`), `${f.path} has the local content`);
    assert.match(fromDelta, /^bin\/tool\.sh f 755 root:root$/m);
    assert.match(fromDelta, /^data\/model\.bin f 644 root:root$/m);
    assert.match(fromDelta, /^data d 1770 root:plumber-model$/m);
    // The model was linked from the first release, not written again.
    assert.equal(await onDroplet(['stat', '-c', '%h', `/var/plumber/model/releases/${changed.release}/data/model.bin`]), '2');
  });
});

describe('a hostile file list, sent with a raw client, changes nothing', () => {
  let open: () => Promise<AgentConnection>;
  let victim: { release: string; plumberR: BundleFile; listing: string; releases: string; manifests: string };
  let otherSecret: string;

  /** A deploy of `victim` with this file list; `bundle` gets the files the agent asked for and says what to send. */
  async function rawDelta(manifest: BundleFile[], bundle: (need: number[]) => RawEntry[]): Promise<{ need: number[] | null; error: RemoteError }> {
    // A connection each: one whose deploy was refused before the upload keeps waiting for its end.
    const connection = await open();
    let need: number[] | null = null;
    let asked: (files: number[]) => void = () => undefined;
    const needed = new Promise<number[]>((resolve) => (asked = resolve));
    const pending = connection.start<DeployResult>({ type: 'deploy', name: 'victim', forward: false, manifest }, { onNeed: (files) => asked(files) });
    const answered = pending.result.then(() => null, () => null);
    need = await Promise.race([needed, answered]);
    if (need !== null) {
      const tgz = gzipSync(rawTar(bundle(need)));
      await connection.sendBinary(tgz);
      connection.notify({ type: 'upload-end', id: pending.id, bytes: tgz.length });
    }
    const error = await pending.result.then(() => assert.fail('the deploy was accepted'), (err: unknown) => err);
    connection.close();
    assert.ok(error instanceof RemoteError, String(error));
    return { need, error };
  }

  const snapshot = async () => ({
    listing: await listing('victim', victim.release),
    releases: await onDroplet(['ls', '/var/plumber/victim/releases']),
    manifests: await onDroplet(['ls', '/var/plumber/victim/manifests']),
  });

  before(async () => {
    otherSecret = `secret ${randomBytes(16).toString('hex')}\n`;
    await deployJson(await apiDir({ ...sumApi('other'), 'secret.txt': otherSecret }), 'other');
    const dir = await apiDir(sumApi('victim'));
    const deployed = await deployJson(dir, 'victim');
    const [plumberR] = await bundleManifest(dir, await inspectApiDir(dir));
    victim = { release: deployed.release, plumberR: plumberR!, listing: '', releases: '', manifests: '' };
    Object.assign(victim, await snapshot());
    const { droplets } = JSON.parse(await readFile(path.join(user.configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: Array<{ uuid: string; fingerprint: string }> };
    const key = await loadSigningKey(path.join(user.configHome, 'plumb'));
    open = async () => AgentConnection.open({ host: address, port: AGENT_PORT }, droplets[0]!.fingerprint, await tokenFor(key, droplets[0]!.uuid));
  });

  test('deploy: paths outside the release in the file list are refused before a byte is asked for', async () => {
    for (const bad of ['../../../etc/cron.d/pwned', '/etc/cron.d/pwned', 'a/../../x']) {
      const { need, error } = await rawDelta([victim.plumberR, { path: bad, sha256: victim.plumberR.sha256, size: victim.plumberR.size, executable: false }], () => []);
      assert.equal(need, null);
      assert.equal(error.code, 'BUNDLE_REFUSED');
      assert.match(error.message, /^file list entry ".*" (would land outside the release|is an absolute path)$/);
    }
    assert.equal(await onDroplet(['sh', '-c', 'test -e /etc/cron.d/pwned && echo there || echo none']), 'none');
    assert.deepEqual(await snapshot(), { listing: victim.listing, releases: victim.releases, manifests: victim.manifests });
  });

  test("deploy: a hash of another API's file or of a system file is asked for, never linked; a bundle that lacks it or differs is refused", async () => {
    const shadow = await onDroplet(['sha256sum', '/etc/shadow']);
    const stolen: BundleFile = { path: 'stolen.txt', sha256: sha256(otherSecret), size: Buffer.byteLength(otherSecret), executable: false };
    const system: BundleFile = { path: 'shadow', sha256: shadow.split(' ')[0]!, size: 1, executable: false };
    const manifest = [victim.plumberR, stolen, system];

    const lacking = await rawDelta(manifest, () => [{ path: 'shadow', body: 'x' }]);
    assert.deepEqual(lacking.need, [1, 2], "the victim's own plumber.R is reused; the other API's secret and /etc/shadow are asked for");
    assert.equal(lacking.error.message, 'the bundle lacks "stolen.txt", which the agent asked for');

    const differs = await rawDelta(manifest, () => [{ path: 'stolen.txt', body: 'not the secret\n' }, { path: 'shadow', body: 'x' }]);
    assert.match(differs.error.message, /^bundle entry "stolen\.txt" differs from its entry in the file list/);

    const added: BundleFile = { path: 'added.R', sha256: sha256('1\n'), size: 2, executable: false };
    const extra = await rawDelta([victim.plumberR, added], () => [{ path: 'added.R', body: '1\n' }, { path: 'extra.R', body: '1' }]);
    assert.deepEqual(extra.need, [1]);
    assert.equal(extra.error.message, 'bundle entry "extra.R" was not asked for');
    assert.deepEqual(await snapshot(), { listing: victim.listing, releases: victim.releases, manifests: victim.manifests });
    assert.equal((await httpGet(`http://${address}/victim/version`, 30_000)).body, '["victim"]');
  });
});

describe('status', () => {
  test('status: each worker of each API, with its own process, from one question to systemd', async () => {
    await deployJson(await apiDir(sumApi('two')), 'two', '--workers', '2');
    const run = await user.plumb(['status', '--json']);
    assert.equal(run.exitCode, 0, run.stderr);
    const [droplet] = JSON.parse(run.stdout) as Array<{ status: { apis: Array<{ name: string; state: string; workers: Array<{ port: number; state: string; pid: number | null }> }> } }>;
    const apis = droplet!.status.apis;
    assert.deepEqual(apis.map((a) => a.name), ['model', 'other', 'two', 'victim']);
    const workers = apis.flatMap((a) => a.workers.map((w) => ({ api: a.name, ...w })));
    assert.equal(workers.length, 5);
    for (const w of workers) {
      assert.equal(w.state, 'active', `${w.api}@${w.port}`);
      const unitPid = await onDroplet(['systemctl', 'show', `plumber-${w.api}@${w.port}.service`, '-p', 'MainPID', '--value']);
      assert.equal(String(w.pid), unitPid, `${w.api}@${w.port}'s pid is its own unit's`);
    }
  });
});
