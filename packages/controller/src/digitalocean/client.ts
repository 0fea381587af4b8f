import { DigitalOceanError, pollUntil, ValidationError } from '@plumb/shared';
import { modules } from 'dots-wrapper';
import { duration, TOKENS_URL, toDigitalOceanError, type CallContext } from './errors.js';
import {
  defaultRetryLimits,
  mayHaveTakenEffect,
  retrying,
  retryRepeatableRequests,
  systemClock,
  type Clock,
  type RetryLimits,
  type RetryPolicy,
} from './retry.js';

export const DIGITALOCEAN_API_URL = 'https://api.digitalocean.com/v2';
/** One HTTP request to DigitalOcean, answer included. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** DigitalOcean's largest `per_page`. */
export const LIST_PAGE_SIZE = 200;
/** A list longer than this many pages is not followed further (at 200 a page: 10,000 items). */
export const MAX_LIST_PAGES = 50;

export interface Droplet {
  id: number;
  name: string;
  /** `new` until it has booted and has an address, then `active` (`off` when powered off). */
  status: string;
  region: string;
  size: string;
  image: string;
  tags: string[];
  /** The public IPv4 address, once DigitalOcean lists one. */
  publicIpv4: string | undefined;
  createdAt: string;
}

export interface Account {
  uuid: string;
  email: string;
  status: string;
  dropletLimit: number;
}

export interface SshKey {
  id: number;
  name: string;
  fingerprint: string;
  publicKey: string;
}

export interface CreateDropletRequest {
  name: string;
  region: string;
  size: string;
  image: string;
  /** Key ids or fingerprints. */
  sshKeys?: (number | string)[];
  /** How plumb finds its droplets, and a create whose answer was lost. */
  tags: string[];
  userData: string;
}

export interface LoadBalancer {
  id: string;
  name: string;
  /** '' until DigitalOcean has given it an address. */
  ip: string;
  status: string;
  tag: string;
  dropletIds: number[];
  forwardingRules: modules.loadBalancer.IForwardingRule[];
  healthCheck: modules.loadBalancer.IHealthCheck;
  redirectHttpToHttps: boolean;
}

export interface DomainRecord {
  id: number;
  type: string;
  name: string;
  data: string;
}

export interface Certificate {
  id: string;
  name: string;
  type: 'custom' | 'lets_encrypt';
  state: 'pending' | 'verified' | 'error';
  dns_names: string[];
}

export interface CreateLoadBalancerRequest {
  name: string;
  region: string;
  tag: string;
  forwardingRules: modules.loadBalancer.IForwardingRule[];
  healthCheck: modules.loadBalancer.IHealthCheck;
}

const toLoadBalancer = (lb: modules.loadBalancer.ILoadBalancer): LoadBalancer => ({
  id: lb.id,
  name: lb.name,
  ip: lb.ip ?? '',
  status: lb.status,
  tag: lb.tag ?? '',
  dropletIds: [...(lb.droplet_ids ?? [])],
  forwardingRules: lb.forwarding_rules,
  healthCheck: lb.health_check,
  redirectHttpToHttps: lb.redirect_http_to_https === true,
});

export interface WaitForActiveOptions {
  timeoutMs: number;
  intervalMs: number;
  /** Called with the droplet whenever its status or its address changes (and on the first look). */
  onStatus?: (droplet: Droplet) => void;
}

export interface DigitalOceanOptions {
  token: string;
  /** The v2 API's base URL, ending in /v2 (the lab's stand-in, or DigitalOcean's own by default). */
  apiUrl?: string;
  requestTimeoutMs?: number;
  retry?: Partial<RetryLimits>;
  /** Tests make time pass without waiting. */
  clock?: Partial<Clock>;
  /** Items asked for per page of a list; DigitalOcean's maximum unless a test wants many pages. */
  pageSize?: number;
}

function apiBase(url: string): string {
  const base = url.trim().replace(/\/+$/, '');
  const parsed = URL.canParse(base) ? new URL(base) : undefined;
  if (parsed === undefined || !['http:', 'https:'].includes(parsed.protocol) || !parsed.pathname.endsWith('/v2')) {
    throw new ValidationError(
      `The DigitalOcean API URL must be an http(s) URL ending in /v2, not ${JSON.stringify(url)}.`,
      `Set PLUMB_DIGITALOCEAN_API_URL to the API's base, e.g. ${DIGITALOCEAN_API_URL} (or unset it).`,
    );
  }
  return base;
}

type ApiClient = ReturnType<ReturnType<typeof modules.common.createApiClient>>;
type RawDroplet = modules.droplet.IDroplet;

function toDroplet(d: RawDroplet): Droplet {
  const slug = (x: { slug?: string | null; name?: string } | string | number) =>
    typeof x === 'object' ? (x.slug ?? x.name ?? '') : String(x);
  return {
    id: d.id,
    name: d.name,
    status: d.status,
    region: slug(d.region),
    size: d.size_slug,
    image: slug(d.image),
    tags: [...d.tags],
    publicIpv4: d.networks.v4.find((n) => n.type === 'public')?.ip_address,
    createdAt: d.created_at,
  };
}

const toSshKey = (k: modules.sshKey.ISshKey): SshKey => ({
  id: k.id,
  name: k.name,
  fingerprint: k.fingerprint,
  publicKey: k.public_key,
});

interface Page<T> {
  items: T[];
  links?: { pages?: { next?: string } };
}

/** The page `links.pages.next` points to, if it points further than `page`. */
function nextPage(page: number, links: Page<unknown>['links']): number | undefined {
  const next = links?.pages?.next;
  if (next === undefined) return undefined;
  const n = Number(new URL(next).searchParams.get('page'));
  return Number.isInteger(n) && n > page ? n : undefined;
}

/**
 * The DigitalOcean API as plumb uses it: plain data in and out, every request retried on 429 and
 * transient failures (see retry.ts), every failure a `DigitalOceanError` worded for the terminal.
 */
export class DigitalOcean {
  readonly endpoint: string;
  private readonly api: ApiClient;
  /** dots-wrapper's axios instance (retries included), for the few endpoints it has no function for. */
  private http: ReturnType<typeof modules.common.createContext>['httpClient'] | undefined;
  private readonly policy: RetryPolicy;
  private readonly pageSize: number;

  constructor(opts: DigitalOceanOptions) {
    this.endpoint = apiBase(opts.apiUrl ?? DIGITALOCEAN_API_URL);
    this.policy = { ...defaultRetryLimits, ...opts.retry, ...systemClock, ...opts.clock };
    this.pageSize = opts.pageSize ?? LIST_PAGE_SIZE;
    // dots-wrapper builds its axios instance inside createContext; wrapping that hook is the one
    // place the instance can be reached, so retries are added there, once, for every call.
    const createContext: typeof modules.common.createContext = (input) => {
      const context = modules.common.createContext(input);
      retryRepeatableRequests(context.httpClient, this.policy);
      this.http = context.httpClient;
      return context;
    };
    this.api = modules.common.createApiClient({ modules, createContext })({
      token: opts.token,
      endpoint: this.endpoint,
      requestTimeoutInMs: opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    });
  }

  async account(): Promise<Account> {
    const { data } = await this.call({ what: 'account' }, () => this.api.account.getAccount());
    const a = data.account;
    return { uuid: a.uuid, email: a.email, status: a.status, dropletLimit: a.droplet_limit };
  }

  /**
   * Creates a droplet, exactly once even when answers are lost.
   *
   * A POST that fails with a 5xx or a broken connection may still have created the droplet on
   * DigitalOcean's side; sending it again could make a second one (billed, and unknown to plumb).
   * So before each resend after such a failure, the droplets carrying this request's tags are
   * listed, and one with its name is returned instead of creating another. This relies on plumb
   * never creating two droplets with one name under one tag (provision checks the name first).
   * A 429 is resent without looking: DigitalOcean turns those away before doing anything.
   */
  async createDroplet(req: CreateDropletRequest): Promise<Droplet> {
    const body: modules.droplet.ICreateDropletApiRequest = {
      name: req.name,
      region: req.region,
      size: req.size,
      image: req.image,
      tags: req.tags,
      user_data: req.userData,
    };
    if (req.sshKeys !== undefined && req.sshKeys.length > 0) body.ssh_keys = req.sshKeys;
    const ctx = {
      what: `droplet ${req.name}`,
      mayHaveHappened: 'The droplet may have been created anyway: `plumb droplets` lists it.',
    };
    return this.call(ctx, () =>
      retrying(
        this.policy,
        async () => toDroplet((await this.api.droplet.createDroplet(body)).data.droplet),
        { beforeRetry: async (failure) => (mayHaveTakenEffect(failure) ? this.findCreated(req) : undefined) },
      ),
    );
  }

  async getDroplet(id: number): Promise<Droplet> {
    const { data } = await this.call({ what: `droplet ${id}` }, () => this.api.droplet.getDroplet({ droplet_id: id }));
    return toDroplet(data.droplet);
  }

  /**
   * Puts tags on a droplet made elsewhere (an adopted one), as provision's create puts them on its
   * own. DigitalOcean answers 404 for a tag it does not have yet: that tag is created and the call
   * made again (as DigitalOcean's own Packer plugin does). Tagging twice is harmless, so a retry
   * after a lost answer is too.
   */
  async tagDroplet(id: number, tags: string[]): Promise<void> {
    for (const tag of tags) {
      const assign = () => this.call({ what: `tag ${tag} on droplet ${id}` }, () => this.api.tag.tagResources({ tag_name: tag, resources: [{ resource_id: String(id), resource_type: 'droplet' }] }));
      try {
        await assign();
      } catch (err) {
        if (!(err instanceof DigitalOceanError && err.code === 'DIGITALOCEAN_NOT_FOUND')) throw err;
        await this.call({ what: `tag ${tag}` }, () => this.api.tag.createTag({ name: tag }));
        await assign();
      }
    }
  }

  /** Every droplet (with `tag`: every droplet carrying it), all pages. */
  async listDroplets({ tag }: { tag?: string } = {}): Promise<Droplet[]> {
    const raw = await this.listAll({ what: tag === undefined ? 'droplets' : `droplets tagged ${tag}` }, async (page, per_page) => {
      const { data } = await this.api.droplet.listDroplets({ page, per_page, tag_name: tag });
      return { items: data.droplets, links: data.links };
    });
    return raw.map(toDroplet);
  }

  /**
   * Deletes a droplet. `already-gone` (a 404) is not an error: a DELETE resent after a lost answer
   * meets the droplet it already deleted.
   */
  async deleteDroplet(id: number): Promise<'deleted' | 'already-gone'> {
    try {
      await this.call({ what: `droplet ${id}` }, () => this.api.droplet.deleteDroplet({ droplet_id: id }));
      return 'deleted';
    } catch (err) {
      if (err instanceof DigitalOceanError && err.code === 'DIGITALOCEAN_NOT_FOUND') return 'already-gone';
      throw err;
    }
  }

  /** A load balancer; DigitalOcean answers `new` at once and brings it up behind (see waitForLoadBalancer). */
  async createLoadBalancer(req: CreateLoadBalancerRequest): Promise<LoadBalancer> {
    const body = {
      name: req.name,
      region: req.region,
      tag: req.tag,
      forwarding_rules: req.forwardingRules,
      health_check: req.healthCheck,
    } as unknown as modules.loadBalancer.ICreateLoadBalancerApiRequest;
    const { data } = await this.call({ what: `load balancer ${req.name}` }, () => this.api.loadBalancer.createLoadBalancer(body));
    return toLoadBalancer(data.load_balancer);
  }

  async getLoadBalancer(id: string): Promise<LoadBalancer> {
    const { data } = await this.call({ what: `load balancer ${id}` }, () => this.api.loadBalancer.getLoadBalancer({ load_balancer_id: id }));
    return toLoadBalancer(data.load_balancer);
  }

  async listLoadBalancers(): Promise<LoadBalancer[]> {
    const raw = await this.listAll({ what: 'load balancers' }, async (page, per_page) => {
      const { data } = await this.api.loadBalancer.listLoadBalancers({ page, per_page });
      return { items: data.load_balancers, links: data.links };
    });
    return raw.map(toLoadBalancer);
  }

  async deleteLoadBalancer(id: string): Promise<void> {
    await this.call({ what: `load balancer ${id}` }, () => this.api.loadBalancer.deleteLoadBalancer({ load_balancer_id: id }));
  }

  /**
   * Each droplet's health as the balancer judges it now, from DigitalOcean's monitoring endpoint
   * (dots-wrapper has no function for it): the latest sample of each droplet's series, 1 = healthy.
   */
  async loadBalancerHealth(id: string): Promise<Map<number, boolean>> {
    const now = Math.floor(this.policy.now() / 1000);
    const params = { lb_id: id, start: String(now - 60), end: String(now) };
    const { data } = await this.call({ what: `health of load balancer ${id}` }, async () => {
      if (this.http === undefined) throw new Error('the DigitalOcean client is not ready');
      return this.http.get<{ data: { result: { metric: Record<string, string>; values: [number, string][] }[] } }>('/monitoring/metrics/load_balancer/droplets_health_checks', { params });
    });
    const health = new Map<number, boolean>();
    for (const series of data.data.result) {
      const droplet = Number(series.metric.droplet_id);
      const last = series.values.at(-1);
      if (Number.isInteger(droplet) && last !== undefined) health.set(droplet, last[1] === '1');
    }
    return health;
  }

  /** The zones on DigitalOcean DNS in the account (names only). */
  async listDomains(): Promise<string[]> {
    const raw = await this.listAll({ what: 'domains' }, async (page, per_page) => {
      const { data } = await this.httpClient().get<{ domains: { name: string }[]; links?: Page<unknown>['links'] }>('/domains', { params: { page, per_page } });
      return { items: data.domains, links: data.links };
    });
    return raw.map((d) => d.name);
  }

  async listDomainRecords(zone: string): Promise<DomainRecord[]> {
    return this.listAll({ what: `records of ${zone}` }, async (page, per_page) => {
      const { data } = await this.httpClient().get<{ domain_records: DomainRecord[]; links?: Page<unknown>['links'] }>(`/domains/${encodeURIComponent(zone)}/records`, { params: { page, per_page } });
      return { items: data.domain_records, links: data.links };
    });
  }

  async createDomainRecord(zone: string, record: Omit<DomainRecord, 'id'>): Promise<DomainRecord> {
    const { data } = await this.call({ what: `a ${record.type} record in ${zone}` }, () => this.httpClient().post<{ domain_record: DomainRecord }>(`/domains/${encodeURIComponent(zone)}/records`, record));
    return data.domain_record;
  }

  async deleteDomainRecord(zone: string, id: number): Promise<void> {
    await this.call({ what: `record ${id} of ${zone}` }, () => this.httpClient().delete(`/domains/${encodeURIComponent(zone)}/records/${id}`));
  }

  async listCertificates(): Promise<Certificate[]> {
    return this.listAll({ what: 'certificates' }, async (page, per_page) => {
      const { data } = await this.httpClient().get<{ certificates: Certificate[]; links?: Page<unknown>['links'] }>('/certificates', { params: { page, per_page } });
      return { items: data.certificates, links: data.links };
    });
  }

  /** A DigitalOcean-managed Let's Encrypt certificate; `pending` until DigitalOcean has it issued. */
  async createLetsEncryptCertificate(name: string, dnsNames: string[]): Promise<Certificate> {
    const { data } = await this.call({ what: `certificate ${name}` }, () => this.httpClient().post<{ certificate: Certificate }>('/certificates', { name, type: 'lets_encrypt', dns_names: dnsNames }));
    return data.certificate;
  }

  async deleteCertificate(id: string): Promise<void> {
    await this.call({ what: `certificate ${id}` }, () => this.httpClient().delete(`/certificates/${encodeURIComponent(id)}`));
  }

  async getCertificate(id: string): Promise<Certificate> {
    const { data } = await this.call({ what: `certificate ${id}` }, () => this.httpClient().get<{ certificate: Certificate }>(`/certificates/${encodeURIComponent(id)}`));
    return data.certificate;
  }

  /**
   * Replaces a balancer's forwarding rules and redirect setting. DigitalOcean's update is a full
   * PUT, so everything else is sent back as it is now.
   */
  async updateLoadBalancerRules(id: string, rules: modules.loadBalancer.IForwardingRule[], redirectHttpToHttps: boolean): Promise<LoadBalancer> {
    const { data } = await this.call({ what: `load balancer ${id}` }, async () => {
      const { data: current } = await this.httpClient().get<{ load_balancer: Record<string, unknown> & { region: { slug: string }; tag?: string; droplet_ids?: number[] } }>(`/load_balancers/${encodeURIComponent(id)}`);
      // DigitalOcean's update replaces the whole balancer: everything it has (firewall, proxy
      // protocol, VPC…) goes back as it is, less what only DigitalOcean sets, with the new rules.
      const { id: _id, ip: _ip, ipv6: _ipv6, status: _status, created_at: _created, region, tag, droplet_ids, size, size_unit, ...kept } = current.load_balancer;
      const body = {
        ...kept,
        region: region.slug,
        ...(tag ? { tag } : { droplet_ids: droplet_ids ?? [] }),
        ...(size_unit !== undefined ? { size_unit } : size !== undefined ? { size } : {}),
        forwarding_rules: rules,
        redirect_http_to_https: redirectHttpToHttps,
      };
      return this.httpClient().put<{ load_balancer: modules.loadBalancer.ILoadBalancer }>(`/load_balancers/${encodeURIComponent(id)}`, body);
    });
    return toLoadBalancer(data.load_balancer);
  }

  private httpClient(): NonNullable<DigitalOcean['http']> {
    if (this.http === undefined) throw new Error('the DigitalOcean client is not ready');
    return this.http;
  }

  /** The account's SSH key with this fingerprint, name or id; undefined if there is none. */
  async findSshKey(fingerprintOrName: string): Promise<SshKey | undefined> {
    const ref = fingerprintOrName.trim();
    const raw = await this.listAll({ what: 'SSH keys' }, async (page, per_page) => {
      const { data } = await this.api.sshKey.listSshKeys({ page, per_page });
      return { items: data.ssh_keys, links: data.links };
    });
    const keys = raw.map(toSshKey);
    const exact = keys.find((k) => k.fingerprint === ref || String(k.id) === ref);
    if (exact !== undefined) return exact;
    const named = keys.filter((k) => k.name === ref);
    if (named.length > 1) {
      throw new ValidationError(
        `${named.length} SSH keys on the DigitalOcean account are named ${JSON.stringify(ref)}.`,
        `Give the key's fingerprint instead: ${named.map((k) => k.fingerprint).join(' or ')}`,
      );
    }
    return named[0];
  }

  /** Polls until DigitalOcean says `active` and lists a public IPv4 address (both are needed to reach it). */
  async waitForActive(id: number, opts: WaitForActiveOptions): Promise<{ droplet: Droplet; publicIpv4: string }> {
    let seen: string | undefined;
    let droplet: Droplet | undefined;
    const ready = await pollUntil(
      async () => {
        droplet = await this.getDroplet(id);
        const state = `${droplet.status} ${droplet.publicIpv4 ?? ''}`;
        if (state !== seen) opts.onStatus?.(droplet);
        seen = state;
        return droplet.status === 'active' && droplet.publicIpv4 !== undefined ? { droplet, publicIpv4: droplet.publicIpv4 } : undefined;
      },
      { timeoutMs: opts.timeoutMs, intervalMs: opts.intervalMs, clock: this.policy },
    );
    if (ready) return ready;
    const where = droplet?.status === 'active' ? 'active but without a public IPv4 address' : droplet?.status;
    throw new DigitalOceanError(
      'DIGITALOCEAN_DROPLET_NOT_READY',
      `Droplet ${droplet?.name ?? id} (${id}) is not ready after ${duration(opts.timeoutMs)}: DigitalOcean still reports it ${where}.`,
      { hint: `It may still come up: see https://cloud.digitalocean.com/droplets/${id}, and destroy it if it does not.` },
    );
  }

  /** The newest droplet that this create request would have made, if there is one. */
  private async findCreated(req: CreateDropletRequest): Promise<Droplet | undefined> {
    const [tag] = req.tags;
    const candidates = await this.listDroplets(tag === undefined ? {} : { tag });
    return candidates
      .filter((d) => d.name === req.name && req.tags.every((t) => d.tags.includes(t)))
      .sort((a, b) => b.id - a.id)[0];
  }

  /** Follows `links.pages.next` from page 1. */
  private async listAll<T>(
    ctx: Omit<CallContext, 'endpoint'>,
    fetchPage: (page: number, perPage: number) => Promise<Page<T>>,
  ): Promise<T[]> {
    return this.call(ctx, async () => {
      const all: T[] = [];
      let page: number | undefined = 1;
      for (let fetched = 0; page !== undefined; fetched += 1) {
        if (fetched === MAX_LIST_PAGES) {
          throw new DigitalOceanError(
            'DIGITALOCEAN_ERROR',
            `DigitalOcean lists more than ${MAX_LIST_PAGES} pages of ${ctx.what}; plumb stops there.`,
          );
        }
        const { items, links }: Page<T> = await fetchPage(page, this.pageSize);
        all.push(...items);
        page = nextPage(page, links);
      }
      return all;
    });
  }

  private async call<T>(ctx: Omit<CallContext, 'endpoint'>, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      throw toDigitalOceanError(err, { ...ctx, endpoint: this.endpoint }, this.policy.now());
    }
  }
}

/**
 * The client the CLI uses: the token from DIGITALOCEAN_ACCESS_TOKEN, the API URL from
 * PLUMB_DIGITALOCEAN_API_URL (the lab's stand-in) or DigitalOcean's own.
 */
export function fromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
  opts: Omit<DigitalOceanOptions, 'token' | 'apiUrl'> = {},
): DigitalOcean {
  const token = env.DIGITALOCEAN_ACCESS_TOKEN?.trim();
  if (token === undefined || token === '') {
    throw new DigitalOceanError(
      'DIGITALOCEAN_NO_TOKEN',
      'DIGITALOCEAN_ACCESS_TOKEN is not set: plumb needs a DigitalOcean API token.',
      { hint: `Create a token with read and write scope at ${TOKENS_URL} and export DIGITALOCEAN_ACCESS_TOKEN=<token>` },
    );
  }
  const apiUrl = env.PLUMB_DIGITALOCEAN_API_URL?.trim();
  return new DigitalOcean({ ...opts, token, apiUrl: apiUrl === '' ? undefined : apiUrl });
}
