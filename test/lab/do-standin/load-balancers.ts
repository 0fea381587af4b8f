import { randomUUID } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import type { BalancerConfig, BalancerTarget, Balancers } from './balancers.js';
import { notFound, unprocessable } from './errors.js';
import { parseDropletIds, parseForwardingRules, parseLoadBalancer, type LoadBalancerRequest } from './load-balancer-request.js';
import type { Machines } from './machines.js';
import { paginate } from './pagination.js';
import { queryParam } from './request.js';
import { timestamp, type LoadBalancerRecord, type Store } from './store.js';

/** How often tag-targeted balancers look for droplets that joined, left or got an address. */
export const BALANCER_SYNC_MS = 1000;

export interface LoadBalancerParts {
  store: Store;
  machines: Machines;
  balancers: Balancers;
  log: (line: string) => void;
  /** How long a certificate stays in use after its balancer let it go (0: not at all). */
  certificateReleaseMs?: number;
}

const noContent = (res: Response) => res.status(204).set('content-type', 'application/json; charset=utf-8').end();

/** The droplets a balancer points at: by tag, the droplets carrying it now. */
function dropletIdsOf(lb: LoadBalancerRecord, store: Store): number[] {
  const { target } = lb;
  if ('tag' in target) return [...store.droplets.values()].filter((d) => d.tags.includes(target.tag)).map((d) => d.id);
  return target.dropletIds.filter((id) => store.droplets.has(id));
}

/** What the proxy should run: only droplets that have an address can be sent traffic. */
function configOf(lb: LoadBalancerRecord, { store, machines }: LoadBalancerParts): BalancerConfig {
  const targets: BalancerTarget[] = dropletIdsOf(lb, store).flatMap((dropletId) => {
    const address = machines.inspect(dropletId)?.ipv4?.address;
    return address === undefined ? [] : [{ dropletId, address }];
  });
  const certificates: Record<string, string> = {};
  for (const { certificate_id: id } of lb.forwardingRules) {
    const pems = id === '' ? undefined : store.certificates.get(id)?.pems;
    if (pems !== undefined) certificates[id] = [pems.leaf, pems.chain, pems.key].filter((p) => p.trim() !== '').map((p) => `${p.trim()}\n`).join('');
  }
  return { forwardingRules: lb.forwardingRules, healthCheck: lb.healthCheck, targets, httpIdleTimeoutSeconds: lb.httpIdleTimeoutSeconds, redirectHttpToHttps: lb.redirectHttpToHttps, certificates };
}

export function renderLoadBalancer(lb: LoadBalancerRecord, store: Store) {
  return {
    id: lb.id,
    name: lb.name,
    ip: lb.ip,
    size_unit: lb.sizeUnit,
    algorithm: 'round_robin',
    status: lb.status,
    created_at: lb.createdAt,
    forwarding_rules: lb.forwardingRules,
    health_check: lb.healthCheck,
    sticky_sessions: { type: 'none' },
    region: lb.region,
    ...('tag' in lb.target ? { tag: lb.target.tag } : { tag: '' }),
    droplet_ids: dropletIdsOf(lb, store),
    redirect_http_to_https: lb.redirectHttpToHttps,
    enable_proxy_protocol: false,
    enable_backend_keepalive: false,
    http_idle_timeout_seconds: lb.httpIdleTimeoutSeconds,
    vpc_uuid: lb.vpcUuid,
    disable_lets_encrypt_dns_records: false,
    network: 'EXTERNAL',
    network_stack: 'IPV4',
    type: 'REGIONAL',
    tls_cipher_policy: 'DEFAULT',
  };
}

/**
 * Gives the proxy a balancer's config when it changed (rules, checks, or the droplets behind it),
 * queued behind the proxy's earlier operations. A failure leaves the balancer `errored`.
 */
export function applyConfig(lb: LoadBalancerRecord, parts: LoadBalancerParts): Promise<void> {
  lb.work = lb.work.then(async () => {
    if (lb.status === 'errored' || !parts.store.loadBalancers.has(lb.id)) return;
    const config = configOf(lb, parts);
    const wanted = JSON.stringify(config);
    if (wanted === lb.applied) return;
    try {
      if (lb.status === 'new') {
        lb.ip = (await parts.balancers.create(lb.id, config)).ip;
        lb.status = 'active';
      } else {
        await parts.balancers.configure(lb.id, config);
      }
      lb.applied = wanted;
    } catch (err) {
      lb.status = 'errored';
      parts.log(`do-standin: load balancer ${lb.name} (${lb.id}): ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  return lb.work;
}

/** Keeps every balancer's proxy in step with the droplets its tag or list names. */
export function startBalancerSync(parts: LoadBalancerParts): () => void {
  const timer = setInterval(() => {
    for (const lb of parts.store.loadBalancers.values()) if (lb.status === 'active') void applyConfig(lb, parts);
  }, BALANCER_SYNC_MS);
  timer.unref();
  return () => clearInterval(timer);
}

export function loadBalancerRoutes(parts: LoadBalancerParts): Router {
  const { store, balancers } = parts;
  const router = Router();
  const existing = (req: Request): LoadBalancerRecord => {
    const id = req.params.id;
    const lb = typeof id === 'string' ? store.loadBalancers.get(id) : undefined;
    if (lb === undefined) throw notFound();
    return lb;
  };
  const checkDroplets = (request: LoadBalancerRequest) => {
    const missing = 'dropletIds' in request.target ? request.target.dropletIds.find((id) => !store.droplets.has(id)) : undefined;
    if (missing !== undefined) throw unprocessable(`droplet ${missing} does not exist.`);
    checkCertificates(request.forwardingRules);
  };
  /** A rule may name only a certificate that exists and has been issued. */
  const checkCertificates = (rules: LoadBalancerRequest['forwardingRules']) => {
    for (const { certificate_id: id } of rules) {
      if (id === '') continue;
      const cert = store.certificates.get(id);
      if (cert === undefined) throw unprocessable(`certificate ${id} does not exist.`);
      if (cert.state !== 'verified') throw unprocessable(`certificate ${cert.name} is ${cert.state}, not verified yet.`);
    }
  };
  const view = (lb: LoadBalancerRecord) => renderLoadBalancer(lb, store);
  /**
   * DigitalOcean takes a moment to see that a balancer no longer uses a certificate (its
   * Terraform provider retries the delete for it): the certificates `before` named and the
   * balancer's rules no longer do stay in use for certificateReleaseMs.
   */
  const letGo = (before: LoadBalancerRecord['forwardingRules'], after: LoadBalancerRecord['forwardingRules']) => {
    const until = Date.now() + (parts.certificateReleaseMs ?? 0);
    for (const { certificate_id: id } of before) if (id !== '' && !after.some((r) => r.certificate_id === id) && until > Date.now()) store.certificateHolds.set(id, until);
  };

  router.post('/', (req, res) => {
    const request = parseLoadBalancer(req.body, `lb-${randomUUID().slice(0, 8)}`);
    checkDroplets(request);
    const lb: LoadBalancerRecord = {
      id: randomUUID(),
      name: request.name,
      region: request.region,
      createdAt: timestamp(),
      forwardingRules: request.forwardingRules,
      healthCheck: request.healthCheck,
      target: request.target,
      httpIdleTimeoutSeconds: request.httpIdleTimeoutSeconds,
      sizeUnit: request.sizeUnit,
      redirectHttpToHttps: request.redirectHttpToHttps,
      vpcUuid: store.defaultVpc(request.region.slug),
      ip: '',
      status: 'new',
      work: Promise.resolve(),
      applied: '',
    };
    store.loadBalancers.set(lb.id, lb);
    if ('tag' in lb.target) store.tags.add(lb.target.tag);
    // DigitalOcean answers at once with `new`; the proxy comes up behind it.
    void applyConfig(lb, parts);
    res.status(202).json({ load_balancer: view(lb) });
  });

  router.get('/', (req, res) => {
    const page = paginate(req, [...store.loadBalancers.values()]);
    res.json({ load_balancers: page.items.map(view), links: page.links, meta: page.meta });
  });

  router.get('/:id', (req, res) => {
    res.json({ load_balancer: view(existing(req)) });
  });

  router.put('/:id', async (req, res) => {
    const lb = existing(req);
    const request = parseLoadBalancer(req.body, lb.name);
    checkDroplets(request);
    if (request.region.slug !== lb.region.slug) throw unprocessable('the region of a load balancer cannot be changed.');
    letGo(lb.forwardingRules, request.forwardingRules);
    Object.assign(lb, {
      name: request.name,
      forwardingRules: request.forwardingRules,
      healthCheck: request.healthCheck,
      target: request.target,
      httpIdleTimeoutSeconds: request.httpIdleTimeoutSeconds,
      sizeUnit: request.sizeUnit,
      redirectHttpToHttps: request.redirectHttpToHttps,
    });
    await applyConfig(lb, parts);
    res.json({ load_balancer: view(lb) });
  });

  router.delete('/:id', async (req, res) => {
    const lb = existing(req);
    store.loadBalancers.delete(lb.id);
    letGo(lb.forwardingRules, []);
    // Answered once the proxy is gone, so the host is clean when a test looks (as for droplets).
    await lb.work.catch(() => {});
    await balancers.destroy(lb.id);
    noContent(res);
  });

  const changeDroplets = (add: boolean) => async (req: Request, res: Response) => {
    const lb = existing(req);
    const body = req.body as { droplet_ids?: unknown } | undefined;
    const ids = parseDropletIds(body?.droplet_ids);
    if ('tag' in lb.target) throw unprocessable('droplets cannot be added to or removed from a load balancer that targets a tag: tag them instead.');
    const missing = ids.find((id) => !store.droplets.has(id));
    if (add && missing !== undefined) throw unprocessable(`droplet ${missing} does not exist.`);
    const current = lb.target.dropletIds;
    lb.target = { dropletIds: add ? [...new Set([...current, ...ids])] : current.filter((id) => !ids.includes(id)) };
    await applyConfig(lb, parts);
    noContent(res);
  };
  router.post('/:id/droplets', changeDroplets(true));
  router.delete('/:id/droplets', changeDroplets(false));

  const changeRules = (add: boolean) => async (req: Request, res: Response) => {
    const lb = existing(req);
    const body = req.body as { forwarding_rules?: unknown } | undefined;
    const rules = parseForwardingRules(body?.forwarding_rules);
    checkCertificates(rules);
    const same = (a: (typeof rules)[number], b: (typeof rules)[number]) => a.entry_port === b.entry_port && a.entry_protocol === b.entry_protocol && a.target_port === b.target_port && a.target_protocol === b.target_protocol;
    const next = add ? [...lb.forwardingRules, ...rules] : lb.forwardingRules.filter((r) => !rules.some((x) => same(r, x)));
    if (next.length === 0) throw unprocessable('a load balancer needs at least one forwarding rule.');
    letGo(lb.forwardingRules, next);
    lb.forwardingRules = parseForwardingRules(next);
    await applyConfig(lb, parts);
    noContent(res);
  };
  router.post('/:id/forwarding_rules', changeRules(true));
  router.delete('/:id/forwarding_rules', changeRules(false));
  return router;
}

/**
 * GET /v2/monitoring/metrics/load_balancer/droplets_health_checks: DigitalOcean's way to see each
 * droplet's health as the balancer judges it. One series per droplet, labelled `lb_id` and
 * `droplet_id`, with one sample now: "1" healthy, "0" not (the lab keeps no history).
 */
export function loadBalancerHealthRoute(parts: LoadBalancerParts): Router {
  const router = Router();
  router.get('/droplets_health_checks', async (req, res) => {
    const id = queryParam(req, 'lb_id');
    const lb = id === undefined ? undefined : parts.store.loadBalancers.get(id);
    if (lb === undefined || queryParam(req, 'start') === undefined || queryParam(req, 'end') === undefined) {
      throw unprocessable('lb_id (an existing load balancer), start and end are required.');
    }
    const health = lb.status === 'active' ? await parts.balancers.health(lb.id) : new Map<number, string>();
    const now = Math.floor(Date.now() / 1000);
    const result = dropletIdsOf(lb, parts.store).map((dropletId) => ({
      metric: { lb_id: lb.id, droplet_id: String(dropletId) },
      values: [[now, health.get(dropletId) === 'healthy' ? '1' : '0']],
    }));
    res.json({ status: 'success', data: { resultType: 'matrix', result } });
  });
  return router;
}
