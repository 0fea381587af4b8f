import { Router } from 'express';
import { notFound, unprocessable } from './errors.js';
import type { Store } from './store.js';

/** DigitalOcean's rule for a tag name. */
const TAG_NAME = /^[a-zA-Z0-9_:-]{1,255}$/;

const tagOf = (name: string | undefined) => {
  if (name === undefined || !TAG_NAME.test(name)) throw unprocessable('Tag names may only contain letters, numbers, colons, dashes, and underscores; the maximum length is 255 characters.');
  return name;
};

/**
 * /v2/tags as far as plumb uses it (an adopted droplet is tagged after the fact): create a tag,
 * and tag droplets with one. As on DigitalOcean, tagging with a tag that does not exist is a 404.
 */
export function tagRoutes(store: Store): Router {
  const router = Router();

  router.post('/', (req, res) => {
    const name = tagOf((req.body as { name?: unknown } | undefined)?.name as string | undefined);
    store.tags.add(name);
    const count = [...store.droplets.values()].filter((d) => d.tags.includes(name)).length;
    res.status(201).json({ tag: { name, resources: { count, droplets: { count } } } });
  });

  router.post('/:tag/resources', (req, res) => {
    const name = tagOf(req.params.tag);
    if (!store.tags.has(name)) throw notFound();
    const resources = (req.body as { resources?: unknown } | undefined)?.resources;
    if (!Array.isArray(resources) || resources.length === 0) throw unprocessable('resources is required');
    const droplets = resources.map((r: { resource_id?: unknown; resource_type?: unknown }) => {
      if (r.resource_type !== 'droplet') throw unprocessable('the lab tags droplets only');
      const droplet = store.droplets.get(Number(r.resource_id));
      if (droplet === undefined) throw notFound();
      return droplet;
    });
    for (const d of droplets) if (!d.tags.includes(name)) d.tags.push(name);
    res.status(204).set('content-type', 'application/json; charset=utf-8').end();
  });
  return router;
}
