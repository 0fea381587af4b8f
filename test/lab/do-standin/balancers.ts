/**
 * What the DigitalOcean stand-in needs from whatever really balances traffic. The lab's
 * implementation runs HAProxy in a network namespace of its own (test/lab/balancers/); the
 * stand-in keeps the API's records and tells it which droplets, rules and checks to use.
 */

export type EntryProtocol = 'http' | 'https' | 'http2' | 'http3' | 'tcp' | 'udp';
export type TargetProtocol = 'http' | 'https' | 'http2' | 'tcp' | 'udp';

export interface ForwardingRule {
  entry_protocol: EntryProtocol;
  entry_port: number;
  target_protocol: TargetProtocol;
  target_port: number;
  certificate_id: string;
  tls_passthrough: boolean;
}

/** DigitalOcean's health check settings, with the spec's defaults filled in. */
export interface HealthCheck {
  protocol: 'http' | 'https' | 'tcp';
  port: number;
  path: string;
  check_interval_seconds: number;
  response_timeout_seconds: number;
  unhealthy_threshold: number;
  healthy_threshold: number;
}

/** A droplet the balancer sends traffic to, once it has an address. */
export interface BalancerTarget {
  dropletId: number;
  address: string;
}

export interface BalancerConfig {
  forwardingRules: ForwardingRule[];
  healthCheck: HealthCheck;
  targets: BalancerTarget[];
  httpIdleTimeoutSeconds: number;
  /** Port 80 (http) answers a redirect to https. */
  redirectHttpToHttps: boolean;
  /** The PEM (leaf, chain, key) of each certificate_id the rules name. */
  certificates: Record<string, string>;
}

export type TargetHealth = 'healthy' | 'unhealthy';

export interface Balancers {
  /** Starts a balancer with this config; resolves with its address once it listens. */
  create(id: string, config: BalancerConfig): Promise<{ ip: string }>;
  /** Applies a new config; targets that stay keep their health state. */
  configure(id: string, config: BalancerConfig): Promise<void>;
  /** Each target's health as the balancer's checks judge it now. */
  health(id: string): Promise<Map<number, TargetHealth>>;
  /** Stops the balancer and removes everything it had on the host. */
  destroy(id: string): Promise<void>;
}

/**
 * Balancers on paper, for tests of the API's shapes only (the contract tests): addresses from
 * TEST-NET-3, no traffic, and every target healthy once configured.
 */
export class PaperBalancers implements Balancers {
  private readonly configs = new Map<string, BalancerConfig>();
  private next = 0;

  create(id: string, config: BalancerConfig): Promise<{ ip: string }> {
    this.configs.set(id, config);
    this.next += 1;
    return Promise.resolve({ ip: `203.0.113.${this.next % 250}` });
  }

  configure(id: string, config: BalancerConfig): Promise<void> {
    this.configs.set(id, config);
    return Promise.resolve();
  }

  health(id: string): Promise<Map<number, TargetHealth>> {
    const targets = this.configs.get(id)?.targets ?? [];
    return Promise.resolve(new Map(targets.map((t) => [t.dropletId, 'healthy' as const])));
  }

  destroy(id: string): Promise<void> {
    this.configs.delete(id);
    return Promise.resolve();
  }
}
