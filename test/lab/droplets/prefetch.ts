import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../host.js';
import { aptArchiveDir } from '../paths.js';
import { rootfsDir } from './rootfs.js';

/**
 * What every plumb droplet installs (cloud-init/user-data.yaml), downloaded once into the lab's
 * shared apt archive when the lab is prepared: droplets then install from it instead of each
 * fetching R through the NAT, and the render tests that need R and nginx in the droplet image
 * find them on a fresh machine too.
 */
/**
 * The start of a script run as `sh -c SCRIPT sh DIR ROOTFS ARCHIVE ARGS…` in private mount and pid
 * namespaces: an overlay of the droplet image at DIR/root (upper and work beside it; the image
 * itself is never written) with /dev/null and /proc, ready to chroot into.
 */
export const IMAGE_OVERLAY_PRELUDE = [
  'set -e',
  'dir=$1 rootfs=$2 archive=$3; shift 3',
  'mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"',
  'mount --bind /dev/null "$dir/root/dev/null"',
  'mount -t proc proc "$dir/root/proc"',
];

export const DROPLET_PACKAGES = ['nodejs', 'curl', 'ca-certificates', 'r-base-core', 'r-cran-plumber', 'nginx', 'ufw', 'certbot'];
const PREFETCH_TIMEOUT_MS = 10 * 60_000;

export async function prefetchDropletPackages(log: (line: string) => void = () => {}): Promise<void> {
  const archive = aptArchiveDir();
  await mkdir(path.join(archive, 'partial'), { recursive: true });
  const have = await readdir(archive);
  const missing = ['r-base-core', 'r-cran-plumber', 'nginx', 'nodejs'].filter((p) => !have.some((f) => f.startsWith(`${p}_`)));
  if (missing.length === 0) return;
  log(`downloading what droplets install into the lab's apt archive (${DROPLET_PACKAGES.join(' ')}; once)`);
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-prefetch-'));
  try {
    for (const sub of ['upper', 'work', 'root']) await mkdir(path.join(dir, sub));
    // An overlay of the droplet image (which stays untouched) in a private mount namespace, on the
    // host's network: apt resolves dependencies exactly as a fresh droplet does.
    const script = [
      ...IMAGE_OVERLAY_PRELUDE,
      'mount --bind "$archive" "$dir/root/var/cache/apt/archives"',
      'rm -f "$dir/root/etc/resolv.conf"; cp /etc/resolv.conf "$dir/root/etc/resolv.conf"',
      'chroot "$dir/root" apt-get -qq update',
      'exec chroot "$dir/root" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o APT::Sandbox::User=root install --download-only -y --no-install-recommends "$@"',
    ].join('\n');
    await run('unshare', ['--mount', '--pid', '--fork', '--kill-child', 'sh', '-c', script, 'sh', dir, rootfsDir(), archive, ...DROPLET_PACKAGES], { timeoutMs: PREFETCH_TIMEOUT_MS });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
