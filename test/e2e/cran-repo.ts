import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { c as createTar } from 'tar';
import { LAB_HOST_ADDRESS } from '../lab/droplets/network.js';

/**
 * A CRAN-like repository on the lab host, as R's install.packages() reads one:
 * src/contrib/PACKAGES lists the current version of each package, its tarball beside it, and
 * older versions under src/contrib/Archive/NAME/. The packages are small ones the test writes.
 */
export interface RPackageFixture {
  name: string;
  version: string;
  /** R/*.R files: name → code. */
  code: Record<string, string>;
  /** NAMESPACE; exports everything by default. */
  namespace?: string;
  imports?: string[];
}

export interface CranRepo {
  url: string;
  close(): Promise<void>;
}

async function tarball(dir: string, pkg: RPackageFixture): Promise<string> {
  const build = await mkdtemp(path.join(os.tmpdir(), 'plumb-rpkg-'));
  const root = path.join(build, pkg.name);
  await mkdir(path.join(root, 'R'), { recursive: true });
  const description = [
    `Package: ${pkg.name}`,
    `Version: ${pkg.version}`,
    `Title: A Package Made by a plumb Test`,
    `Description: Tells which version of it is installed.`,
    `Authors@R: person("plumb", "test", email = "test@example.com", role = c("aut", "cre"))`,
    `License: MIT`,
    `Encoding: UTF-8`,
    ...(pkg.imports?.length ? [`Imports: ${pkg.imports.join(', ')}`] : []),
    `NeedsCompilation: no`,
  ].join('\n');
  await writeFile(path.join(root, 'DESCRIPTION'), `${description}\n`);
  await writeFile(path.join(root, 'NAMESPACE'), pkg.namespace ?? 'exportPattern("^[^.]")\n');
  for (const [file, code] of Object.entries(pkg.code)) await writeFile(path.join(root, 'R', file), code);
  const file = path.join(dir, `${pkg.name}_${pkg.version}.tar.gz`);
  await createTar({ cwd: build, gzip: true, portable: true, file }, [pkg.name]);
  await rm(build, { recursive: true, force: true });
  return file;
}

/** Serves `current` (listed in PACKAGES) and `archived` (only under Archive/) on the lab host's address. */
export async function startCranRepo(current: RPackageFixture[], archived: RPackageFixture[] = []): Promise<CranRepo> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'plumb-cran-'));
  const contrib = path.join(root, 'src/contrib');
  await mkdir(contrib, { recursive: true });
  for (const pkg of current) await tarball(contrib, pkg);
  for (const pkg of archived) {
    const dir = path.join(contrib, 'Archive', pkg.name);
    await mkdir(dir, { recursive: true });
    await tarball(dir, pkg);
  }
  const index = current
    .map((p) => [`Package: ${p.name}`, `Version: ${p.version}`, ...(p.imports?.length ? [`Imports: ${p.imports.join(', ')}`] : []), 'License: MIT', 'NeedsCompilation: no'].join('\n'))
    .join('\n\n');
  await writeFile(path.join(contrib, 'PACKAGES'), `${index}\n`);

  const server = createServer((req, res) => {
    const rel = path.normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/')).replace(/^(\.\.(\/|$))+/, '');
    const file = path.join(root, rel);
    if (!file.startsWith(`${root}/`)) return void res.writeHead(404).end();
    stat(file).then(
      (st) => {
        if (!st.isFile()) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-length': st.size });
        createReadStream(file).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, LAB_HOST_ADDRESS, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${LAB_HOST_ADDRESS}:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(root, { recursive: true, force: true });
    },
  };
}
