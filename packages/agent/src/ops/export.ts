import { Readable } from 'node:stream';
import { c as createTar } from 'tar';
import { DEFAULT_WORKERS, EXPORT_CHUNK_BYTES, PlumbError, type ExportResult, type PackagesSpec } from '@plumb/shared';
import { manifestOf, releaseDigest } from '../bundle/delta.js';
import { layout } from '../system/layout.js';
import { liveRelease, type Release } from '../state.js';
import { apiLock, type OpContext } from './context.js';
import { requireApi } from './routing.js';

/**
 * The live release of an API as the bundle a deploy takes (a gzip tar of the files root wrote
 * there, by the agent's own file list), sent to `send` in pieces, then its settings. A controller
 * copies it to another droplet of the group (`plumb group sync`), so a droplet that joins later
 * gets the group's code from the group, not from a laptop that may no longer have it.
 * Holds the API's lock: no deploy may prune the release while it is read.
 */
export async function exportRelease(name: string, send: (chunk: Buffer) => Promise<void>, ctx: OpContext): Promise<ExportResult> {
  return ctx.locks.with(apiLock(name), async () => {
    const api = requireApi(ctx.state.get(), name);
    const live = liveRelease(api);
    if (!live) throw new PlumbError('NO_SUCH_RELEASE', `${name} has no record of its live release ${api.current}`, 'deploy it again');
    const files = await manifestOf(name, api.current);
    if (files.length === 0) throw new PlumbError('NO_SUCH_RELEASE', `the live release ${api.current} of ${name} has no files on this droplet`, 'deploy it again');
    ctx.progress(`sending release ${api.current}`, `${files.length} files`);
    const pack = createTar({ cwd: layout.releaseDir(name, api.current), gzip: true, portable: true, noDirRecurse: true, strict: true }, files.map((f) => f.path));
    let bytes = 0;
    let held: Buffer[] = [];
    let heldBytes = 0;
    const flush = async () => {
      if (heldBytes === 0) return;
      const chunk = Buffer.concat(held);
      held = [];
      heldBytes = 0;
      await send(chunk);
    };
    for await (const piece of Readable.from(pack, { objectMode: false })) {
      const buf = piece as Buffer;
      bytes += buf.length;
      held.push(buf);
      heldBytes += buf.length;
      while (heldBytes >= EXPORT_CHUNK_BYTES) {
        const all = Buffer.concat(held);
        await send(all.subarray(0, EXPORT_CHUNK_BYTES));
        held = [all.subarray(EXPORT_CHUNK_BYTES)];
        heldBytes = all.length - EXPORT_CHUNK_BYTES;
      }
    }
    await flush();
    return {
      name,
      release: api.current,
      digest: releaseDigest(files, live.env),
      bytes,
      files: files.map((f) => f.path),
      forwarded: ctx.state.get().forward === name,
      settings: {
        path: api.path,
        env: live.env,
        workers: api.workers.length || DEFAULT_WORKERS,
        healthPath: api.healthPath,
        healthTimeoutMs: api.healthTimeoutMs,
        memoryMax: api.memoryMax,
        keepReleases: api.keepReleases,
        drainTimeoutMs: api.drainTimeoutMs,
      },
      packages: packagesOfRelease(live, api),
    };
  });
}

/** What the release asked for; a release from before specs were kept: its package names, any version, from the API's repositories. */
function packagesOfRelease(release: Release, api: { repo: string | null; binaryRepo: string | null }): PackagesSpec | null {
  if (release.packagesSpec !== undefined && release.packagesSpec !== null) return release.packagesSpec;
  if (release.packages.length === 0) return null;
  return { needs: release.packages.map((name) => ({ name, version: null, reason: 'recorded on the droplet it was copied from' })), repo: api.repo, binaryRepo: api.binaryRepo, strictVersions: false, rVersion: null };
}
