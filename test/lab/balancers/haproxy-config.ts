import type { BalancerConfig, ForwardingRule } from '../do-standin/balancers.js';

/**
 * HAProxy's configuration for one lab balancer, rendered whole from the stand-in's record. The
 * health check follows DigitalOcean's settings one to one: a check every `check_interval_seconds`
 * (`inter`), failed after `response_timeout_seconds` (`timeout check`), a droplet out after
 * `unhealthy_threshold` failures in a row (`fall`) and back after `healthy_threshold` passes
 * (`rise`). The first rule's backend runs the checks; the others `track` it, so a droplet has one
 * health, as on DigitalOcean, whatever the number of rules.
 */

export interface HaproxyPaths {
  socket: string;
  stateFile: string;
  /** Where each certificate_id's PEM is, as `ID.pem`. */
  certDir: string;
}

const backendName = (rule: ForwardingRule) => `be_${rule.entry_port}`;
const serverName = (dropletId: number) => `d${dropletId}`;

/** A rule with a certificate terminates TLS and speaks HTTP both ways, as DigitalOcean's does. */
const terminates = (rule: ForwardingRule) => rule.entry_protocol === 'https' && rule.certificate_id !== '';

function modeOf(rule: ForwardingRule): 'http' | 'tcp' {
  return rule.entry_protocol === 'http' || terminates(rule) ? 'http' : 'tcp';
}

export function renderHaproxy(config: BalancerConfig, address: string, paths: HaproxyPaths): string {
  const check = config.healthCheck;
  const [first] = config.forwardingRules;
  if (first === undefined) throw new Error('a balancer needs a forwarding rule');
  const lines = [
    '# Written by the plumb lab from a /v2/load_balancers record; rewritten on every change.',
    'global',
    `    stats socket ${paths.socket} mode 600 level admin expose-fd listeners`,
    `    server-state-file ${paths.stateFile}`,
    '    maxconn 4096',
    '',
    'defaults',
    '    timeout connect 5s',
    `    timeout client ${config.httpIdleTimeoutSeconds}s`,
    `    timeout server ${config.httpIdleTimeoutSeconds}s`,
    `    timeout check ${check.response_timeout_seconds}s`,
    // Health survives a reload (a change of droplets or rules), as it does on DigitalOcean.
    '    load-server-state-from-file global',
    `    default-server inter ${check.check_interval_seconds}s fall ${check.unhealthy_threshold} rise ${check.healthy_threshold}`,
  ];
  for (const rule of config.forwardingRules) {
    const mode = modeOf(rule);
    const backend = backendName(rule);
    lines.push(
      '',
      `frontend fe_${rule.entry_port}`,
      `    mode ${mode}`,
      `    bind ${address}:${rule.entry_port}${terminates(rule) ? ` ssl crt ${paths.certDir}/${rule.certificate_id}.pem` : ''}`,
      // DigitalOcean answers a permanent redirect to the same host and path over https.
      ...(config.redirectHttpToHttps && rule.entry_protocol === 'http' ? ['    http-request redirect scheme https code 308'] : []),
      `    default_backend ${backend}`,
      '',
      `backend ${backend}`,
      `    mode ${mode}`,
      '    balance roundrobin',
    );
    if (mode === 'http') lines.push('    option forwardfor', `    http-request set-header X-Forwarded-Proto ${terminates(rule) ? 'https' : 'http'}`);
    const checks = rule === first;
    if (checks && check.protocol === 'http') lines.push(`    option httpchk GET ${check.path}`);
    for (const target of config.targets) {
      const how = checks ? `check port ${check.port}` : `track ${backendName(first)}/${serverName(target.dropletId)}`;
      lines.push(`    server ${serverName(target.dropletId)} ${target.address}:${rule.target_port} ${how}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The first rule's backend, whose servers carry the checks: where health is read. */
export const checkedBackend = (config: BalancerConfig) => (config.forwardingRules[0] ? backendName(config.forwardingRules[0]) : '');
export const dropletOfServer = (name: string) => (/^d\d+$/.test(name) ? Number(name.slice(1)) : undefined);
