import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PlumbError, ValidationError } from '@plumb/shared';
import { distFile } from '../package-files.js';
import { PLUMB_VERSION } from '../plumb-version.js';

/**
 * The agent as the droplet gets it: the npm package `@plumb/agent` of exactly this controller's
 * version, built by `npm run build` (scripts/pack-agent.mjs) into dist/agent-package/. The controller
 * uploads it to the droplet's bootstrap itself; a mirror URL (--agent-url) is the exception.
 */
export interface AgentPackage {
  name: string;
  version: string;
  /** npm's subresource integrity (`sha512-<base64>`), as the registry lists it in `dist.integrity`. */
  integrity: string;
  /** The same digest in hex: what the droplet's bootstrap checks. */
  sha512: string;
  bytes: number;
  /** The built tarball on this machine. */
  tarballPath: string;
  /** A mirror the droplet downloads the tarball from; undefined: the controller uploads it. */
  url: string | undefined;
}

export const AGENT_URL_VARIABLE = 'PLUMB_AGENT_URL';

interface Manifest {
  name: string;
  version: string;
  file: string;
  integrity: string;
  sha512: string;
}

function isManifest(value: unknown): value is Manifest {
  if (typeof value !== 'object' || value === null) return false;
  const m = value as Record<string, unknown>;
  const strings = ['name', 'version', 'file', 'integrity', 'sha512'].every((k) => typeof m[k] === 'string');
  return (
    strings &&
    /^[A-Za-z0-9][A-Za-z0-9._-]*\.tgz$/.test(m.file as string) &&
    /^sha512-[A-Za-z0-9+/]{86}==$/.test(m.integrity as string) &&
    /^[0-9a-f]{128}$/.test(m.sha512 as string)
  );
}

/** --agent-url, else PLUMB_AGENT_URL, else none (the controller uploads the package). */
function mirrorUrl(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string | undefined {
  const value = (flag ?? env[AGENT_URL_VARIABLE])?.trim();
  if (value === undefined || value === '') return undefined;
  const parsed = URL.canParse(value) ? new URL(value) : undefined;
  if (parsed === undefined || !['http:', 'https:'].includes(parsed.protocol)) {
    const from = flag === undefined ? AGENT_URL_VARIABLE : '--agent-url';
    throw new ValidationError(
      `${from} must be an http(s) URL of the agent's tarball, not ${JSON.stringify(value)}`,
      `leave it out: plumb then sends the agent to the droplet itself`,
    );
  }
  return parsed.href;
}

/**
 * The agent package built alongside this controller; with a mirror URL (the `agentUrl` flag, else
 * `PLUMB_AGENT_URL`) the droplet downloads it from there, with the same size and sha512 check.
 */
export async function agentPackage(env: Readonly<Record<string, string | undefined>> = process.env, agentUrl?: string): Promise<AgentPackage> {
  const manifestUrl = distFile('agent-package/agent-package.json');
  const text = await readFile(manifestUrl, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new PlumbError('AGENT_PACKAGE_MISSING', 'the agent package is not built', 'run npm run build');
    throw err;
  });
  const manifest: unknown = JSON.parse(text);
  if (!isManifest(manifest)) {
    throw new PlumbError('AGENT_PACKAGE_INVALID', `${fileURLToPath(manifestUrl)} is not an agent package manifest`, 'run npm run build');
  }
  if (manifest.version !== PLUMB_VERSION) {
    throw new PlumbError(
      'AGENT_PACKAGE_MISMATCH',
      `the built agent package is version ${manifest.version} but plumb is ${PLUMB_VERSION}`,
      'run npm run build',
    );
  }
  const tarballPath = fileURLToPath(distFile(`agent-package/${manifest.file}`));
  return {
    name: manifest.name,
    version: manifest.version,
    integrity: manifest.integrity,
    sha512: manifest.sha512,
    bytes: (await stat(tarballPath)).size,
    tarballPath,
    url: mirrorUrl(agentUrl, env),
  };
}
