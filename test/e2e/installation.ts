import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { startPackageServer, type PackageServer } from '../lab/package-server.js';
import { LAB_HOST_ADDRESS } from '../lab/droplets/network.js';
import type { PlumbRun, PlumbUser } from './plumb.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Another plumb installation on this machine: the same code built as another version. */
export interface Installation {
  version: string;
  /** Serves its agent package to lab droplets (for a provision by this installation). */
  packages: PackageServer;
  agentUrl: string;
  /** Runs this installation's `plumb` as `user` (same config dir: same key, same droplets). */
  plumb(user: PlumbUser, args: string[]): Promise<PlumbRun>;
  close(): Promise<void>;
}

/**
 * Copies the built workspace (dist trees, package.json files, the pack script; node_modules
 * linked) with both package versions set to `version`, and packs its agent as `npm run build`
 * does. `breakAgent` makes an agent that answers `--version` but throws as it starts.
 */
export async function buildInstallation(version: string, opts: { breakAgent?: boolean } = {}): Promise<Installation> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `plumb-install-${version}-`));
  await symlink(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
  await cp(path.join(REPO, 'package.json'), path.join(dir, 'package.json'));
  await cp(path.join(REPO, 'scripts/pack-agent.mjs'), path.join(dir, 'scripts/pack-agent.mjs'));
  for (const pkg of ['agent', 'controller']) {
    const from = path.join(REPO, 'packages', pkg);
    const to = path.join(dir, 'packages', pkg);
    await mkdir(to, { recursive: true });
    const manifest = JSON.parse(await readFile(path.join(from, 'package.json'), 'utf8')) as { version: string };
    await writeFile(path.join(to, 'package.json'), JSON.stringify({ ...manifest, version }, null, 2));
    // The controller's packed agent is made again below, at this version.
    const packed = path.join(from, 'dist', 'agent-package');
    await cp(path.join(from, 'dist'), path.join(to, 'dist'), { recursive: true, filter: (src) => src !== packed && !src.startsWith(`${packed}${path.sep}`) });
    if (pkg === 'controller') await cp(path.join(from, 'examples'), path.join(to, 'examples'), { recursive: true });
  }
  if (opts.breakAgent) {
    const main = path.join(dir, 'packages/agent/dist/main.js');
    const code = await readFile(main, 'utf8');
    const broken = code.replace('const paths = agentPaths();', "throw new Error('broken on purpose: this agent fails as it starts');");
    if (broken === code) throw new Error('could not break the agent: main.js changed shape');
    await writeFile(main, broken);
  }
  await execa(process.execPath, [path.join(dir, 'scripts/pack-agent.mjs')], { cwd: dir });
  const agentDir = path.join(dir, 'packages/controller/dist/agent-package');
  const { file } = JSON.parse(await readFile(path.join(agentDir, 'agent-package.json'), 'utf8')) as { file: string };
  const packages = await startPackageServer({ dir: agentDir, host: LAB_HOST_ADDRESS });
  const agentUrl = packages.url(file);
  const cli = path.join(dir, 'packages/controller/dist/plumb.js');
  return {
    version,
    packages,
    agentUrl,
    plumb: async (user, args) => {
      const result = await execa(process.execPath, [cli, ...args], { env: { ...user.env, PLUMB_AGENT_URL: agentUrl }, reject: false, timeout: 900_000, stdin: 'ignore' });
      return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
    },
    close: async () => {
      await packages.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
