import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Machines } from './do-standin/machines.js';
import type { Store } from './do-standin/store.js';

/** Where DigitalOcean's metadata service answers inside every droplet; the lab DNATs it to `MetadataServer`. */
export const METADATA_ADDRESS = '169.254.169.254';

export interface MetadataServer {
  port: number;
  /**
   * The lab's switch for a host DigitalOcean did not make: its requests get no answer (the
   * connection is reset), as on a server elsewhere where nothing listens at 169.254.169.254.
   */
  hide(dropletId: number): void;
  close(): Promise<void>;
}

/**
 * DigitalOcean's metadata service (https://docs.digitalocean.com/reference/api/metadata/) for the
 * stand-in's droplets: each droplet's requests reach this one listener through a DNAT on the host
 * side of its veth, and the source address says which droplet asks. Only the paths plumb and a
 * curious operator use: `/metadata/v1/id`, `hostname`, `region`, `tags`, the public IPv4 and `/metadata/v1.json`.
 */
export async function startMetadataServer(opts: { host: string; store: Store; machines: Machines }): Promise<MetadataServer> {
  const hidden = new Set<number>();
  const dropletAt = (address: string | undefined) =>
    [...opts.store.droplets.values()].find((d) => opts.machines.inspect(d.id)?.ipv4?.address === address?.replace(/^::ffff:/, ''));

  const server = createServer((req, res) => {
    const droplet = dropletAt(req.socket.remoteAddress);
    if (droplet === undefined || hidden.has(droplet.id)) {
      req.socket.destroy();
      return;
    }
    const ipv4 = opts.machines.inspect(droplet.id)?.ipv4;
    const json = {
      droplet_id: droplet.id,
      hostname: droplet.name,
      region: droplet.region.slug,
      tags: droplet.tags,
      interfaces: { public: ipv4 ? [{ ipv4: { ip_address: ipv4.address, netmask: ipv4.netmask, gateway: ipv4.gateway }, type: 'public' }] : [] },
    };
    const plain: Record<string, string> = {
      '/metadata/v1/id': String(droplet.id),
      '/metadata/v1/hostname': droplet.name,
      '/metadata/v1/region': droplet.region.slug,
      '/metadata/v1/tags': droplet.tags.map((t) => `${t}\n`).join(''),
      '/metadata/v1/interfaces/public/0/ipv4/address': ipv4?.address ?? '',
    };
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (req.method !== 'GET') res.writeHead(405, { allow: 'GET' }).end();
    else if (path === '/metadata/v1.json') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(json));
    else if (plain[path] !== undefined) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(plain[path]);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    hide: (id) => void hidden.add(id),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
