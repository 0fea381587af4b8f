import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PlumbError, ValidationError } from '@plumb/shared';

/**
 * The agent as the droplet gets it: the npm package `@plumb/agent` of exactly this controller's
 * version, built by `npm run build` (scripts/pack-agent.mjs) into dist/agent/.
 */
export interface AgentPackage {
  name: string;
  version: string;
  /** npm's subresource integrity (`sha512-<base64>`), as the registry lists it in `dist.integrity`. */
  integrity: string;
  /** The same digest in hex, for `sha512sum -c` on the droplet. */
  sha512: string;
  /** The built tarball on this machine. */
  tarballPath: string;
  /** Where the droplet downloads the tarball from. */
  url: string;
}

/** Where the agent lands on the droplet; its systemd unit starts `AGENT_BIN_PATH`. */
export const AGENT_INSTALL_DIR = '/opt/plumb-agent';
export const AGENT_BIN_PATH = '/usr/local/bin/plumb-agent';
const AGENT_CACHE_DIR = '/var/cache/plumb-agent';

const URL_VARIABLE = 'PLUMB_AGENT_URL';

interface Manifest {
  name: string;
  version: string;
  file: string;
  integrity: string;
  sha512: string;
  registryUrl: string;
}

function isManifest(value: unknown): value is Manifest {
  if (typeof value !== 'object' || value === null) return false;
  const m = value as Record<string, unknown>;
  const strings = ['name', 'version', 'file', 'integrity', 'sha512', 'registryUrl'].every((k) => typeof m[k] === 'string');
  return (
    strings &&
    /^[A-Za-z0-9][A-Za-z0-9._-]*\.tgz$/.test(m.file as string) &&
    /^sha512-[A-Za-z0-9+/]{86}==$/.test(m.integrity as string) &&
    /^[0-9a-f]{128}$/.test(m.sha512 as string)
  );
}

function downloadUrl(env: Readonly<Record<string, string | undefined>>, registryUrl: string): string {
  const value = env[URL_VARIABLE]?.trim();
  if (value === undefined || value === '') return registryUrl;
  const parsed = URL.canParse(value) ? new URL(value) : undefined;
  if (parsed === undefined || !['http:', 'https:'].includes(parsed.protocol)) {
    throw new ValidationError(
      `${URL_VARIABLE} must be an http(s) URL of the agent's tarball, not ${JSON.stringify(value)}.`,
      `Unset ${URL_VARIABLE} to install the published package (${registryUrl}).`,
    );
  }
  return parsed.href;
}

/**
 * The agent package built alongside this controller. The droplet downloads it from
 * `PLUMB_AGENT_URL` when set (the lab serves its local build), else from the npm registry.
 */
export async function agentPackage(env: Readonly<Record<string, string | undefined>> = process.env): Promise<AgentPackage> {
  const manifestUrl = new URL('./agent/agent-package.json', import.meta.url);
  const text = await readFile(manifestUrl, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new PlumbError('AGENT_PACKAGE_MISSING', 'the agent package is not built', 'run npm run build');
    throw err;
  });
  const manifest: unknown = JSON.parse(text);
  if (!isManifest(manifest)) {
    throw new PlumbError('AGENT_PACKAGE_INVALID', `${fileURLToPath(manifestUrl)} is not an agent package manifest`, 'run npm run build');
  }
  const controller = createRequire(import.meta.url)('../package.json') as { version: string };
  if (manifest.version !== controller.version) {
    throw new PlumbError(
      'AGENT_PACKAGE_MISMATCH',
      `the built agent package is version ${manifest.version} but plumb is ${controller.version}`,
      'run npm run build',
    );
  }
  return {
    name: manifest.name,
    version: manifest.version,
    integrity: manifest.integrity,
    sha512: manifest.sha512,
    tarballPath: fileURLToPath(new URL(`./agent/${manifest.file}`, import.meta.url)),
    url: downloadUrl(env, manifest.registryUrl),
  };
}

export interface InstallOptions {
  /** Prefix for every path on the droplet ('/' there; a scratch directory in tests). */
  root?: string;
}

// cloud-init runs runcmd as one `sh` script without `set -e`: a failed command does not stop the
// next one. So checking the hash, extracting and linking are one step that stops at a wrong hash.
const VERIFY_AND_INSTALL =
  'if ! printf "%s  %s\\n" "$1" "$2" | sha512sum -c --status; then ' +
  'echo "plumb-agent: $2 does not match the expected sha512, not installed" >&2; exit 1; fi; ' +
  'mkdir -p "$3" "${4%/*}" && ' +
  'tar -xzf "$2" --no-same-owner --strip-components=1 -C "$3" && ' +
  'ln -sfn "$3/bundle/plumb-agent.mjs" "$4"';

/**
 * cloud-init `runcmd` entries (argument arrays, nothing interpolated into a shell string) that
 * download the agent package, check its sha512, unpack it into /opt/plumb-agent and link
 * /usr/local/bin/plumb-agent to its bundle. A wrong hash exits non-zero with nothing unpacked.
 */
export function agentInstallCommands(pkg: AgentPackage, opts: InstallOptions = {}): string[][] {
  const at = (p: string) => path.posix.join(opts.root ?? '/', p);
  const tarball = path.posix.join(at(AGENT_CACHE_DIR), path.basename(pkg.tarballPath));
  return [
    ['mkdir', '-p', at(AGENT_CACHE_DIR)],
    ['curl', '-fsSL', '--retry', '5', '--retry-connrefused', '-o', tarball, pkg.url],
    ['sh', '-c', VERIFY_AND_INSTALL, 'sh', pkg.sha512, tarball, at(AGENT_INSTALL_DIR), at(AGENT_BIN_PATH)],
  ];
}
