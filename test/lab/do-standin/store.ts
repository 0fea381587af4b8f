import { randomInt, randomUUID } from 'node:crypto';
import type { ForwardingRule, HealthCheck } from './balancers.js';
import type { Image, Region, Size } from './catalog.js';

export interface SshKeyRecord {
  id: number;
  name: string;
  public_key: string;
  fingerprint: string;
}

export interface DropletRecord {
  id: number;
  name: string;
  size: Size;
  region: Region;
  image: Image;
  tags: string[];
  features: string[];
  createdAt: string;
  vpcUuid: string;
  /** Kept for tests and the lab's own inspection; DigitalOcean never returns it. */
  userData: string;
  sshKeys: SshKeyRecord[];
  /** Set while the machine is being destroyed, so a second DELETE waits for the same teardown. */
  destroying?: Promise<void>;
}

export type ActionStatus = 'in-progress' | 'completed' | 'errored';

export interface ActionRecord {
  id: number;
  type: string;
  status: ActionStatus;
  startedAt: string;
  completedAt: string | null;
  resourceId: number;
  region: Region;
}

export interface LoadBalancerRecord {
  id: string;
  name: string;
  region: Region;
  createdAt: string;
  forwardingRules: ForwardingRule[];
  healthCheck: HealthCheck;
  /** Tag-targeted balancers follow the tag; the others keep their own list. */
  target: { tag: string } | { dropletIds: number[] };
  httpIdleTimeoutSeconds: number;
  sizeUnit: number;
  redirectHttpToHttps: boolean;
  vpcUuid: string;
  /** '' until the proxy listens. */
  ip: string;
  status: 'new' | 'active' | 'errored';
  /** Operations on the proxy, one after another. */
  work: Promise<void>;
  /** What the proxy was last given, to tell when it needs a new config. */
  applied: string;
}

/** DigitalOcean's timestamps have whole seconds: 2020-07-21T18:37:44Z. */
export const timestamp = (at: Date = new Date()) => at.toISOString().replace(/\.\d{3}Z$/, 'Z');

type IdKind = 'droplet' | 'sshKey' | 'action' | 'domainRecord';

/**
 * Ids start at a random point of the range DigitalOcean uses today and grow by random steps, so
 * they are large, unique within a run, and unlikely to meet leftovers of an earlier lab run.
 */
const idRanges: Record<IdKind, number> = { droplet: 500_000_000, sshKey: 45_000_000, action: 2_500_000_000, domainRecord: 1_700_000_000 };

/** The stand-in's whole state, in memory: a lab run starts empty. */
export class Store {
  readonly sshKeys = new Map<number, SshKeyRecord>();
  readonly droplets = new Map<number, DropletRecord>();
  readonly actions = new Map<number, ActionRecord>();
  readonly loadBalancers = new Map<string, LoadBalancerRecord>();
  readonly certificates = new Map<string, CertificateRecord>();
  /**
   * Certificates a balancer let go of (it was deleted, or its rule removed), by id: until this
   * time (ms since the epoch) DigitalOcean still counts them in use and refuses their deletion.
   */
  readonly certificateHolds = new Map<string, number>();
  /** Zones on "DigitalOcean DNS", by name. */
  readonly domains = new Map<string, DomainRecord>();
  /** Tags outlive their droplets, as DigitalOcean's do; deleting by a never-seen tag is a 404. */
  readonly tags = new Set<string>();
  private readonly lastIds: Record<IdKind, number> = {
    droplet: idRanges.droplet + randomInt(100_000_000),
    sshKey: idRanges.sshKey + randomInt(5_000_000),
    action: idRanges.action + randomInt(100_000_000),
    domainRecord: idRanges.domainRecord + randomInt(100_000_000),
  };
  private readonly vpcs = new Map<string, string>();

  nextId(kind: IdKind): number {
    this.lastIds[kind] += 1 + randomInt(97);
    return this.lastIds[kind];
  }

  /** Each region has one default VPC, which every droplet created there joins. */
  defaultVpc(regionSlug: string): string {
    let uuid = this.vpcs.get(regionSlug);
    if (uuid === undefined) {
      uuid = randomUUID();
      this.vpcs.set(regionSlug, uuid);
    }
    return uuid;
  }
}

/** What a certificate is on the wire: the PEMs the balancer serves (never returned by the API). */
export interface CertificatePems {
  leaf: string;
  chain: string;
  key: string;
}

export interface CertificateRecord {
  id: string;
  name: string;
  type: 'custom' | 'lets_encrypt';
  dnsNames: string[];
  state: 'pending' | 'verified' | 'error';
  createdAt: string;
  /** '' while pending (nothing issued yet). */
  notAfter: string;
  sha1: string;
  pems?: CertificatePems;
}

export interface DomainRecordEntry {
  id: number;
  type: string;
  name: string;
  data: string;
  ttl: number;
}

export interface DomainRecord {
  name: string;
  ttl: number;
  records: DomainRecordEntry[];
}
