import express, { Router } from 'express';
import { accountRoutes, type Account } from './account.js';
import { actionRoutes } from './actions.js';
import { requireToken } from './auth.js';
import { catalogRoutes } from './catalog-routes.js';
import { certificateRoutes, type CertificateIssuer } from './certificates.js';
import { domainRoutes } from './domains.js';
import { dropletRoutes } from './droplets.js';
import { assignRequestId, errorHandler, routeNotFound } from './errors.js';
import { injectFaults, type Faults } from './faults.js';
import { labRoutes } from './lab-routes.js';
import type { Balancers } from './balancers.js';
import { loadBalancerHealthRoute, loadBalancerRoutes } from './load-balancers.js';
import type { Machines } from './machines.js';
import { rateLimit, type RateLimiter } from './rate-limit.js';
import { logRequests, type RequestLog } from './request-log.js';
import { sshKeyRoutes } from './ssh-keys.js';
import { tagRoutes } from './tags.js';
import type { Store } from './store.js';

/** Room for a create request with 64 KiB of user data, so its size is judged by the API's own rule. */
const MAX_BODY_BYTES = 1024 * 1024;

export interface AppParts {
  tokens: ReadonlySet<string>;
  machines: Machines;
  balancers: Balancers;
  issuer: CertificateIssuer;
  store: Store;
  faults: Faults;
  limiter: RateLimiter;
  requests: RequestLog;
  account: Account;
  log: (line: string) => void;
  /** How long a certificate stays in use after its balancer let it go. */
  certificateReleaseMs?: number;
}

/**
 * The order of the /v2 middleware is DigitalOcean's as seen from outside: every response carries
 * a request id and rate-limit headers; an injected fault (the edge failing) comes before the token
 * check; the body is read only for an authenticated caller.
 */
export function createApp(parts: AppParts): express.Express {
  const { tokens, machines, balancers, issuer, store, faults, limiter, requests, account, log, certificateReleaseMs } = parts;
  const v2 = Router();
  v2.use(
    logRequests(requests),
    assignRequestId,
    rateLimit(limiter, tokens),
    injectFaults(faults),
    requireToken(tokens),
    express.json({ limit: MAX_BODY_BYTES }),
  );
  v2.use('/account/keys', sshKeyRoutes(store));
  v2.use('/account', accountRoutes(account));
  v2.use('/droplets', dropletRoutes({ store, machines, dropletLimit: account.droplet_limit, log }));
  v2.use('/actions', actionRoutes(store, machines));
  v2.use('/tags', tagRoutes(store));
  v2.use('/load_balancers', loadBalancerRoutes({ store, machines, balancers, log, ...(certificateReleaseMs === undefined ? {} : { certificateReleaseMs }) }));
  v2.use('/certificates', certificateRoutes(store, issuer));
  v2.use('/domains', domainRoutes(store));
  v2.use('/monitoring/metrics/load_balancer', loadBalancerHealthRoute({ store, machines, balancers, log }));
  v2.use(catalogRoutes());
  v2.use(routeNotFound);
  v2.use(errorHandler(log));

  const app = express();
  app.disable('x-powered-by');
  // DigitalOcean's API sends no ETags, so a client never gets a 304 from it.
  app.set('etag', false);
  app.use('/v2', v2);
  app.use('/lab', labRoutes(faults, requests));
  app.use((req, res) => {
    res.status(404).json({
      id: 'not_found',
      message:
        `The resource you were accessing could not be found: ${req.method} ${req.path}. The lab's API is under ` +
        `/v2 (dots-wrapper's endpoint must end in /v2), its controls under /lab.`,
    });
  });
  return app;
}
