import { unprocessable } from './errors.js';
import { findRegion, type Region } from './catalog.js';
import type { EntryProtocol, ForwardingRule, HealthCheck, TargetProtocol } from './balancers.js';

/**
 * The parts of a load balancer request the lab acts on, checked as DigitalOcean checks them: a
 * wrong value is a 422 with a message naming it. What the lab cannot do for real (UDP, HTTP/2 and
 * HTTP/3 entry, TLS to the droplets) is refused the same way, with a message that says it is the
 * lab refusing, so no test passes on a balancer that does not really balance.
 */

type Fields = Record<string, unknown>;

const ENTRY: readonly EntryProtocol[] = ['http', 'https', 'http2', 'http3', 'tcp', 'udp'];
const TARGET: readonly TargetProtocol[] = ['http', 'https', 'http2', 'tcp', 'udp'];
/** DigitalOcean's documented ranges for the health check settings. */
const CHECK_SECONDS = { min: 3, max: 300 };
const THRESHOLD = { min: 2, max: 10 };
export const HEALTH_CHECK_DEFAULTS: HealthCheck = {
  protocol: 'http',
  port: 80,
  path: '/',
  check_interval_seconds: 10,
  response_timeout_seconds: 5,
  unhealthy_threshold: 5,
  healthy_threshold: 3,
};
/** Tags may contain letters, numbers, colons, dashes and underscores, at most 255 characters. */
export const TAG_RULE = /^[a-zA-Z0-9_:-]{1,255}$/;
const NAME_RULE = /^[a-zA-Z0-9.-]{1,255}$/;

const isObject = (v: unknown): v is Fields => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

export function parseForwardingRules(raw: unknown): ForwardingRule[] {
  if (!Array.isArray(raw) || raw.length === 0) throw unprocessable('forwarding_rules must contain at least one forwarding rule.');
  const rules = raw.map(parseRule);
  const ports = new Set<number>();
  for (const rule of rules) {
    if (ports.has(rule.entry_port)) throw unprocessable(`entry_port ${rule.entry_port} is used by more than one forwarding rule.`);
    ports.add(rule.entry_port);
  }
  return rules;
}

function parseRule(raw: unknown): ForwardingRule {
  if (!isObject(raw)) throw unprocessable('each forwarding rule must be an object.');
  const entry = raw.entry_protocol;
  const target = raw.target_protocol;
  if (!ENTRY.includes(entry as EntryProtocol)) throw unprocessable(`entry_protocol must be one of ${ENTRY.join(', ')}.`);
  if (!TARGET.includes(target as TargetProtocol)) throw unprocessable(`target_protocol must be one of ${TARGET.join(', ')}.`);
  if (!isPort(raw.entry_port) || !isPort(raw.target_port)) throw unprocessable('entry_port and target_port must be between 1 and 65535.');
  const rule: ForwardingRule = {
    entry_protocol: entry as EntryProtocol,
    entry_port: raw.entry_port,
    target_protocol: target as TargetProtocol,
    target_port: raw.target_port,
    certificate_id: typeof raw.certificate_id === 'string' ? raw.certificate_id : '',
    tls_passthrough: raw.tls_passthrough === true,
  };
  if (rule.tls_passthrough && (rule.entry_protocol !== 'https' || rule.target_protocol !== 'https')) {
    throw unprocessable('tls_passthrough needs entry_protocol and target_protocol https.');
  }
  if (rule.tls_passthrough && rule.certificate_id !== '') throw unprocessable('a forwarding rule cannot have both a certificate_id and tls_passthrough.');
  if (rule.entry_protocol === 'https' && !rule.tls_passthrough && rule.certificate_id === '') throw unprocessable('an https forwarding rule needs a certificate_id or tls_passthrough.');
  const terminates = rule.entry_protocol === 'https' && rule.target_protocol === 'http' && rule.certificate_id !== '';
  const supported = (rule.entry_protocol === 'http' && rule.target_protocol === 'http') || (rule.entry_protocol === 'tcp' && rule.target_protocol === 'tcp') || rule.tls_passthrough || terminates;
  if (!supported) {
    throw unprocessable(`the lab's balancer forwards http to http, tcp to tcp, https to http with a certificate and https with tls_passthrough; not ${rule.entry_protocol} to ${rule.target_protocol}.`);
  }
  return rule;
}

function setting(raw: Fields, key: keyof HealthCheck, range: { min: number; max: number }): number {
  const value = raw[key] ?? HEALTH_CHECK_DEFAULTS[key];
  if (!Number.isInteger(value) || (value as number) < range.min || (value as number) > range.max) {
    throw unprocessable(`health_check.${key} must be a whole number from ${range.min} to ${range.max}.`);
  }
  return value as number;
}

export function parseHealthCheck(raw: unknown): HealthCheck {
  if (raw === undefined) return { ...HEALTH_CHECK_DEFAULTS };
  if (!isObject(raw)) throw unprocessable('health_check must be an object.');
  const protocol = raw.protocol ?? HEALTH_CHECK_DEFAULTS.protocol;
  if (protocol !== 'http' && protocol !== 'https' && protocol !== 'tcp') throw unprocessable('health_check.protocol must be http, https or tcp.');
  const port = raw.port ?? HEALTH_CHECK_DEFAULTS.port;
  if (!isPort(port)) throw unprocessable('health_check.port must be between 1 and 65535.');
  const path = raw.path ?? HEALTH_CHECK_DEFAULTS.path;
  if (typeof path !== 'string' || !/^\/[\x21-\x7e]{0,1023}$/.test(path)) throw unprocessable('health_check.path must be an absolute path without spaces.');
  const check: HealthCheck = {
    protocol,
    port,
    path,
    check_interval_seconds: setting(raw, 'check_interval_seconds', CHECK_SECONDS),
    response_timeout_seconds: setting(raw, 'response_timeout_seconds', CHECK_SECONDS),
    unhealthy_threshold: setting(raw, 'unhealthy_threshold', THRESHOLD),
    healthy_threshold: setting(raw, 'healthy_threshold', THRESHOLD),
  };
  if (check.protocol === 'https') throw unprocessable("the lab's balancer checks health over http or tcp, not https.");
  return check;
}

export interface LoadBalancerRequest {
  name: string;
  region: Region;
  forwardingRules: ForwardingRule[];
  healthCheck: HealthCheck;
  target: { tag: string } | { dropletIds: number[] };
  httpIdleTimeoutSeconds: number;
  sizeUnit: number;
  redirectHttpToHttps: boolean;
}

export function parseDropletIds(raw: unknown): number[] {
  if (!Array.isArray(raw) || !raw.every((id) => Number.isSafeInteger(id) && (id as number) > 0)) throw unprocessable('droplet_ids must be an array of droplet ids.');
  return [...new Set(raw as number[])];
}

/** A create (POST) or a full update (PUT): the same body, all of it given each time. */
export function parseLoadBalancer(body: unknown, fallbackName: string): LoadBalancerRequest {
  if (!isObject(body)) throw unprocessable('the request body must be a JSON object.');
  const name = body.name ?? fallbackName;
  if (typeof name !== 'string' || !NAME_RULE.test(name)) throw unprocessable('name may contain letters, numbers, dots and dashes only.');
  const region = typeof body.region === 'string' ? findRegion(body.region) : undefined;
  if (region === undefined || !region.available) throw unprocessable('region must be the slug of an available region.');
  if (body.tag !== undefined && body.droplet_ids !== undefined) throw unprocessable('specify either droplet_ids or tag, not both.');
  let target: LoadBalancerRequest['target'];
  if (body.tag !== undefined) {
    if (typeof body.tag !== 'string' || !TAG_RULE.test(body.tag)) throw unprocessable('tag may contain letters, numbers, colons, dashes and underscores.');
    target = { tag: body.tag };
  } else {
    target = { dropletIds: body.droplet_ids === undefined ? [] : parseDropletIds(body.droplet_ids) };
  }
  const idle = body.http_idle_timeout_seconds ?? 60;
  if (!Number.isInteger(idle) || (idle as number) < 30 || (idle as number) > 600) throw unprocessable('http_idle_timeout_seconds must be from 30 to 600.');
  const sizeUnit = body.size_unit ?? 1;
  if (!Number.isInteger(sizeUnit) || (sizeUnit as number) < 1 || (sizeUnit as number) > 100) throw unprocessable('size_unit must be from 1 to 100.');
  const redirect = body.redirect_http_to_https ?? false;
  if (typeof redirect !== 'boolean') throw unprocessable('redirect_http_to_https must be true or false.');
  const forwardingRules = parseForwardingRules(body.forwarding_rules);
  if (redirect && !forwardingRules.some((r) => r.entry_protocol === 'https')) throw unprocessable('redirect_http_to_https needs a forwarding rule with entry_protocol https.');
  return {
    name,
    region,
    forwardingRules,
    healthCheck: parseHealthCheck(body.health_check),
    target,
    httpIdleTimeoutSeconds: idle as number,
    sizeUnit: sizeUnit as number,
    redirectHttpToHttps: redirect,
  };
}
