import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface PackageServerOptions {
  /** The directory whose files are served (not its subdirectories). */
  dir: string;
  /** The address to listen on: the lab's host address, so droplets reach it. */
  host: string;
  /** 0 (the default) picks a free port. */
  port?: number;
}

export interface PackageServer {
  /** The URL a droplet downloads `file` (a basename in `dir`) from. */
  url(file: string): string;
  close(): Promise<void>;
}

/**
 * Serves the locally built agent package to lab droplets, as the npm registry serves the
 * published one. Only a GET/HEAD for the exact name of a regular file in `dir` answers 200.
 */
export async function startPackageServer(opts: PackageServerOptions): Promise<PackageServer> {
  const servable = async (name: string) =>
    (await readdir(opts.dir, { withFileTypes: true })).some((e) => e.isFile() && e.name === name);

  const server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const name = decodeName(req.url ?? '');
      if (name === undefined || !(await servable(name))) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const file = path.join(opts.dir, name);
      const type = name.endsWith('.json') ? 'application/json' : 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'content-length': (await stat(file)).size });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      createReadStream(file)
        .on('error', () => res.destroy())
        .pipe(res);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const base = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  return {
    url: (file) => `${base}/${encodeURIComponent(file)}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The one path segment of a request URL, or undefined for anything else (subpaths, `..`). */
function decodeName(url: string): string | undefined {
  const pathname = url.split('?')[0] ?? '';
  if (!/^\/[^/]+$/.test(pathname)) return undefined;
  let name: string;
  try {
    name = decodeURIComponent(pathname.slice(1));
  } catch {
    return undefined;
  }
  return name.includes('/') || name.includes('\\') || name === '.' || name === '..' ? undefined : name;
}
