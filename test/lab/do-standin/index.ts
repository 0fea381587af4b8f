import type { AddressInfo } from 'node:net';
import type express from 'express';
import { labAccount } from './account.js';
import { createApp } from './app.js';
import { PaperBalancers, type Balancers } from './balancers.js';
import { NoIssuer, type CertificateIssuer } from './certificates.js';
import { Faults } from './faults.js';
import { startBalancerSync } from './load-balancers.js';
import type { Machines } from './machines.js';
import { RATE_LIMIT_PER_HOUR, RateLimiter } from './rate-limit.js';
import { RequestLog } from './request-log.js';
import { Store } from './store.js';

export type { FaultSpec, FaultStatus, PendingFault } from './faults.js';
export type { LoggedRequest } from './request-log.js';
export type { BalancerConfig, BalancerTarget, Balancers, ForwardingRule, HealthCheck, TargetHealth } from './balancers.js';
export { PaperBalancers } from './balancers.js';
export type { CertificateIssuer } from './certificates.js';
export type { CertificatePems } from './store.js';
export type { MachineAddress, MachineInfo, MachineSpec, MachineState, Machines } from './machines.js';
export { Faults } from './faults.js';
export { RequestLog } from './request-log.js';
export { Store } from './store.js';

export interface DoStandinOptions {
  /** API tokens the stand-in accepts as `Authorization: Bearer TOKEN`. */
  tokens: string[];
  machines: Machines;
  /** What really balances traffic for `/v2/load_balancers`; records only (PaperBalancers) when omitted. */
  balancers?: Balancers;
  /** Who issues `lets_encrypt` certificates; none (they stay pending) when omitted. */
  issuer?: CertificateIssuer;
  /** The account's droplet limit, enforced on create as DigitalOcean does (new real accounts start lower). */
  dropletLimit?: number;
  /** Requests per token per hour before the stand-in itself answers 429. */
  rateLimitPerHour?: number;
  /** Where internal failures (a machine that would not start) are reported; silent by default. */
  log?: (line: string) => void;
  /**
   * How long DigitalOcean still counts a certificate in use (and refuses to delete it) after the
   * balancer that used it was deleted or dropped its rule; 0 (not at all) when omitted.
   */
  certificateReleaseMs?: number;
}

export interface DoStandin {
  app: express.Express;
  /** Injected faults; the same queue `POST /lab/faults` fills. */
  faults: Faults;
  /** The API's records (droplets, keys, actions, tags). */
  store: Store;
  /** What reached /v2; the same data `GET /lab/requests` shows. */
  requests: RequestLog;
  /** Stops keeping balancers in step with their droplets. */
  stopSync: () => void;
}

export const DEFAULT_DROPLET_LIMIT = 25;

export function createDoStandin(opts: DoStandinOptions): DoStandin {
  const dropletLimit = opts.dropletLimit ?? DEFAULT_DROPLET_LIMIT;
  const store = new Store();
  const faults = new Faults();
  const requests = new RequestLog();
  const balancers = opts.balancers ?? new PaperBalancers();
  const log = opts.log ?? (() => {});
  const app = createApp({
    tokens: new Set(opts.tokens),
    machines: opts.machines,
    balancers,
    issuer: opts.issuer ?? new NoIssuer(),
    store,
    faults,
    limiter: new RateLimiter(opts.rateLimitPerHour ?? RATE_LIMIT_PER_HOUR),
    requests,
    account: labAccount(dropletLimit),
    log,
    ...(opts.certificateReleaseMs === undefined ? {} : { certificateReleaseMs: opts.certificateReleaseMs }),
  });
  const stopSync = startBalancerSync({ store, machines: opts.machines, balancers, log });
  return { app, faults, store, requests, stopSync };
}

export interface StartedDoStandin extends DoStandin {
  /** Base URL, e.g. http://127.0.0.1:41234 (lab controls are under `${url}/lab`). */
  url: string;
  /**
   * What to give dots-wrapper's `createApiClient({ endpoint })`: `${url}/v2`. dots-wrapper joins
   * its paths (`/droplets`) to the endpoint, and its own default is https://api.digitalocean.com/v2.
   */
  endpoint: string;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 and a free port unless told otherwise. */
export async function startDoStandin(opts: DoStandinOptions & { host?: string; port?: number }): Promise<StartedDoStandin> {
  const standin = createDoStandin(opts);
  const host = opts.host ?? '127.0.0.1';
  const server = standin.app.listen(opts.port ?? 0, host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    ...standin,
    url,
    endpoint: `${url}/v2`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        standin.stopSync();
        server.close((err) => (err ? reject(err) : resolve()));
        // Idle keep-alive connections (axios keeps them) would hold close() open; busy ones finish first.
        server.closeIdleConnections();
      }),
  };
}
