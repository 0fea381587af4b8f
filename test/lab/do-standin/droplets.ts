import { Router, type Request, type Response } from 'express';
import { actionHref, dropletActionRoutes, recordAction } from './actions.js';
import { parseCreateDroplet, type CreateDropletRequest } from './droplet-request.js';
import { renderDroplet } from './droplet-view.js';
import { notFound, serverError, unprocessable } from './errors.js';
import type { MachineSpec, Machines } from './machines.js';
import { paginate } from './pagination.js';
import { pathId, queryParam } from './request.js';
import { timestamp, type DropletRecord, type Store } from './store.js';

export interface DropletRoutesOptions {
  store: Store;
  machines: Machines;
  dropletLimit: number;
  log: (line: string) => void;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** DigitalOcean answers DELETE with 204 and a content type, and the spec documents that header. */
function noContent(res: Response): void {
  res.status(204).set('content-type', 'application/json; charset=utf-8').end();
}

export function dropletRoutes({ store, machines, dropletLimit, log }: DropletRoutesOptions): Router {
  const router = Router();
  /** Creations between the limit check and the store, so concurrent requests cannot overshoot it. */
  let creating = 0;

  const existing = (req: Request) => {
    const id = pathId(req, 'id');
    const droplet = id === undefined ? undefined : store.droplets.get(id);
    if (droplet === undefined) throw notFound();
    return droplet;
  };
  const view = (d: DropletRecord) => renderDroplet(d, machines.inspect(d.id));

  const newRecord = (request: CreateDropletRequest, name: string): DropletRecord => ({
    id: store.nextId('droplet'),
    name,
    size: request.size,
    region: request.region,
    image: request.image,
    tags: request.tags,
    features: request.features,
    createdAt: timestamp(),
    vpcUuid: request.vpcUuid ?? store.defaultVpc(request.region.slug),
    userData: request.userData,
    sshKeys: request.sshKeys,
  });
  const machineSpec = (d: DropletRecord): MachineSpec => ({
    id: d.id,
    name: d.name,
    vcpus: d.size.vcpus,
    memoryMiB: d.size.memory,
    diskGiB: d.size.disk,
    userData: d.userData,
    publicKeys: d.sshKeys.map((k) => k.public_key),
  });

  /**
   * A request for several droplets is all or nothing: if one machine cannot be created, the others
   * are destroyed again and the API answers 500, so a client never has to find half a request.
   */
  async function createMachines(records: DropletRecord[]): Promise<void> {
    const results = await Promise.allSettled(records.map((d) => machines.create(machineSpec(d))));
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failed.length === 0) return;
    log(`do-standin: creating droplet machines failed: ${failed.map(messageOf).join('; ')}`);
    await Promise.allSettled(records.filter((_, i) => results[i]?.status === 'fulfilled').map((d) => machines.destroy(d.id)));
    throw serverError();
  }

  /**
   * DELETE answers only once the machine is gone, so a 204 means the droplet's resources are
   * really released and a test can check the host right after. DigitalOcean answers at once and
   * destroys in the background; a client cannot tell the difference except by timing.
   */
  function destroy(droplet: DropletRecord): Promise<void> {
    droplet.destroying ??= machines.destroy(droplet.id).then(
      () => {
        store.droplets.delete(droplet.id);
      },
      (err: unknown) => {
        delete droplet.destroying;
        throw err;
      },
    );
    return droplet.destroying;
  }

  router.post('/', async (req, res) => {
    const request = parseCreateDroplet(req.body, store);
    if (store.droplets.size + creating + request.names.length > dropletLimit) {
      throw unprocessable(`creating this/these droplet(s) will exceed your droplet limit (${dropletLimit})`);
    }
    const records = request.names.map((name) => newRecord(request, name));
    creating += records.length;
    try {
      await createMachines(records);
    } finally {
      creating -= records.length;
    }
    for (const droplet of records) {
      store.droplets.set(droplet.id, droplet);
      for (const tag of droplet.tags) store.tags.add(tag);
    }
    const links = {
      actions: records.map((d) => {
        const { id } = recordAction(store, 'create', d);
        return { id, rel: 'create', href: actionHref(req, id) };
      }),
    };
    const [first] = records;
    const created = request.multiple || first === undefined ? { droplets: records.map(view) } : { droplet: view(first) };
    res.status(202).json({ ...created, links });
  });

  router.get('/', (req, res) => {
    const tag = queryParam(req, 'tag_name');
    const name = queryParam(req, 'name');
    // GPU droplets are listed only with type=gpus; the lab has none.
    const all = queryParam(req, 'type') === 'gpus' ? [] : [...store.droplets.values()];
    const matching = all.filter((d) => (tag === undefined || d.tags.includes(tag)) && (name === undefined || d.name === name));
    const page = paginate(req, matching);
    res.json({ droplets: page.items.map(view), links: page.links, meta: page.meta });
  });

  router.delete('/', async (req, res) => {
    const tag = queryParam(req, 'tag_name');
    if (tag === undefined || tag === '') throw unprocessable('tag_name is required to delete droplets by tag.');
    if (!store.tags.has(tag)) throw notFound();
    const tagged = [...store.droplets.values()].filter((d) => d.tags.includes(tag));
    const results = await Promise.allSettled(tagged.map(destroy));
    const failure = results.find((r) => r.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    noContent(res);
  });

  router.get('/:id', (req, res) => {
    res.json({ droplet: view(existing(req)) });
  });

  router.delete('/:id', async (req, res) => {
    await destroy(existing(req));
    noContent(res);
  });

  router.use('/:id/actions', dropletActionRoutes(store, machines, log));
  return router;
}
