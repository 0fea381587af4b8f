import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa, type Result, type ResultPromise } from 'execa';
import { rootfsDir } from '../lab/droplets/rootfs.js';

/** A command running in the droplet image; `upper` holds every file it wrote (the overlay's upper layer). */
export interface ImageRun {
  process: ResultPromise<{ reject: false }>;
  upper: string;
  /** Stops the command if it still runs and removes the overlay's directories. */
  done(): Promise<void>;
}

/**
 * Starts a command chrooted into an overlay of the lab's cached Debian 13 root filesystem, in a
 * user and mount namespace of its own: the cache is never written, and nothing reaches the host
 * (swapon there is refused, as in a lab droplet). The host's network is shared. `files` (path in
 * the image -> content) are written into the image first; `sys` binds the host's /sys in too.
 */
export async function startInDropletImage(files: Record<string, string>, command: string[], timeoutMs = 120_000, opts: { sys?: boolean } = {}): Promise<ImageRun> {
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-droplet-image-'));
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, 'in', name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  await mkdir(path.join(dir, 'in'), { recursive: true });
  const script = [
    'set -e',
    'dir=$1 rootfs=$2; shift 2',
    'mkdir "$dir/upper" "$dir/work" "$dir/root"',
    'mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"',
    'mount --bind /dev/null "$dir/root/dev/null"',
    'mount --rbind /proc "$dir/root/proc"',
    // systemd's daemons (journald) look for the cgroup tree under /sys.
    ...(opts.sys ? ['mount --rbind /sys "$dir/root/sys"'] : []),
    'cp -r "$dir/in/." "$dir/root/"',
    'exec chroot "$dir/root" "$@"',
  ].join('\n');
  const child = execa('unshare', ['--user', '--map-root-user', '--mount', 'sh', '-c', script, 'sh', dir, rootfsDir(), ...command], { reject: false, timeout: timeoutMs });
  return {
    process: child,
    upper: path.join(dir, 'upper'),
    done: async () => {
      child.kill();
      await child;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs a command in the droplet image to its end (startInDropletImage). */
export async function inDropletImage(files: Record<string, string>, command: string[]): Promise<Result<{ reject: false }>> {
  const run = await startInDropletImage(files, command);
  try {
    return await run.process;
  } finally {
    await run.done();
  }
}
