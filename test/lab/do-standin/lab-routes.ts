import express, { Router, type ErrorRequestHandler } from 'express';
import { FaultSpecError, parseFault, type Faults } from './faults.js';
import type { RequestLog } from './request-log.js';

/**
 * /lab: the stand-in's control panel for tests and demos. Not part of DigitalOcean's API, so no
 * token, no rate limit, no faults, and not counted in the request log.
 */
export function labRoutes(faults: Faults, requests: RequestLog): Router {
  const router = Router();
  router.use(express.json());

  router.get('/faults', (_req, res) => {
    res.json({ faults: faults.pending() });
  });
  router.post('/faults', (req, res) => {
    faults.add(parseFault(req.body));
    res.status(201).json({ faults: faults.pending() });
  });
  router.delete('/faults', (_req, res) => {
    faults.clear();
    res.status(204).end();
  });

  router.get('/requests', (_req, res) => {
    res.json(requests.snapshot());
  });
  router.delete('/requests', (_req, res) => {
    requests.clear();
    res.status(204).end();
  });

  const badRequest: ErrorRequestHandler = (err: unknown, _req, res, next) => {
    if (err instanceof FaultSpecError || (err instanceof SyntaxError && 'body' in err)) {
      res.status(400).json({ error: err.message });
      return;
    }
    next(err);
  };
  router.use(badRequest);
  return router;
}
