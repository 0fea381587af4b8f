import { Router } from 'express';
import { images, regions, sizes } from './catalog.js';
import { paginate } from './pagination.js';
import { queryParam } from './request.js';

/** /v2/regions, /v2/sizes and /v2/images: read-only, paginated like every other list. */
export function catalogRoutes(): Router {
  const router = Router();
  router.get('/regions', (req, res) => {
    const page = paginate(req, regions);
    res.json({ regions: page.items, links: page.links, meta: page.meta });
  });
  router.get('/sizes', (req, res) => {
    const page = paginate(req, sizes);
    res.json({ sizes: page.items, links: page.links, meta: page.meta });
  });
  router.get('/images', (req, res) => {
    // The catalog holds distribution images only: no application images, no private snapshots.
    const type = queryParam(req, 'type');
    const onlyPrivate = queryParam(req, 'private') === 'true';
    const listed = onlyPrivate || (type !== undefined && type !== 'distribution') ? [] : images;
    const page = paginate(req, listed);
    res.json({ images: page.items, links: page.links, meta: page.meta });
  });
  return router;
}
