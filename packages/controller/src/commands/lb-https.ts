import { checkInput, DomainName, GroupName, HTTPS_MAX_DOMAINS, LB_CERTIFICATE_TIMEOUT_MS, PlumbError, pollUntil } from '@plumb/shared';
import type { Context } from '../context.js';
import { fromEnv, type Certificate, type DigitalOcean } from '../digitalocean/client.js';
import { balancerName, certificateName, groupBalancer, lbView, removedLines, removeGroupCertificates, type LbView, type Removed } from './lb.js';

const POLL_MS = 2000;
const HTTPS_PORT = 443;

export interface LbHttpsOptions {
  group: string;
  domains: string[];
  /** Port 80 answers a redirect to https (default). */
  redirect: boolean;
}

export interface LbHttpsResult extends LbView {
  url: string;
  domains: string[];
  certificate: { id: string; name: string; reused: boolean };
  redirect: boolean;
}

/** Where each domain lives on DigitalOcean DNS: its zone and its name in the zone (`@` for the apex). */
interface Placement {
  domain: string;
  zone: string;
  recordName: string;
}

function place(domains: string[], zones: string[]): Placement[] {
  return domains.map((domain) => {
    // The longest zone the domain is in, as DNS delegation picks it.
    const zone = zones.filter((z) => domain === z || domain.endsWith(`.${z}`)).sort((a, b) => b.length - a.length)[0];
    if (zone === undefined) {
      const parent = domain.split('.').slice(-2).join('.');
      throw new PlumbError(
        'DOMAIN_NOT_ON_DIGITALOCEAN',
        `${domain} is not on DigitalOcean DNS: the account has no zone for it, and DigitalOcean issues a Let's Encrypt certificate only for its own zones`,
        `add the zone (\`doctl compute domain create ${parent}\`) and point its NS records at ns1.digitalocean.com, ns2 and ns3, then run this again (docs/scale-out.md, "HTTPS for a group")`,
      );
    }
    return { domain, zone, recordName: domain === zone ? '@' : domain.slice(0, -(zone.length + 1)) };
  });
}

async function waitVerified(api: DigitalOcean, cert: Certificate): Promise<Certificate> {
  const issued = await pollUntil(
    async (attempt) => {
      const now = attempt === 0 ? cert : await api.getCertificate(cert.id);
      if (now.state === 'error') throw new PlumbError('LB_CERTIFICATE_FAILED', `DigitalOcean could not issue certificate ${now.name} for ${now.dns_names.join(', ')} (state: error)`, 'check that the zone\'s NS records point at DigitalOcean (ns1-3.digitalocean.com), delete the certificate in the control panel and run this again (the balancer was not changed; the domain\'s A record to it stays)');
      return now.state === 'verified' ? now : undefined;
    },
    { timeoutMs: LB_CERTIFICATE_TIMEOUT_MS, intervalMs: POLL_MS },
  );
  if (!issued) throw new PlumbError('LB_CERTIFICATE_FAILED', `certificate ${cert.name} is still pending after ${LB_CERTIFICATE_TIMEOUT_MS / 60_000} minutes; the balancer was not changed (the domain's A record to it stays)`, 'run this again later: it reuses the certificate and the record');
  return issued;
}

/**
 * HTTPS for group G, terminated on its balancer with a DigitalOcean-managed Let's Encrypt
 * certificate (docs/scale-out.md): every check comes before the first change, so bad input and a
 * zone that is not on DigitalOcean DNS change nothing.
 */
export async function lbHttps(opts: LbHttpsOptions, ctx: Context): Promise<LbHttpsResult> {
  const group = checkInput(GroupName, opts.group, 'group name');
  if (opts.domains.length === 0) throw new PlumbError('INVALID_INPUT', 'plumb lb https needs --domain D (the name the group answers to)', 'plumb lb https GROUP --domain api.example.com');
  if (opts.domains.length > HTTPS_MAX_DOMAINS) throw new PlumbError('INVALID_INPUT', `at most ${HTTPS_MAX_DOMAINS} domains per certificate`, 'give fewer --domain');
  const domains = [...new Set(opts.domains.map((d) => checkInput(DomainName, d, '--domain')))];
  const api = fromEnv(ctx.env);
  const lb = await groupBalancer(api, group, `create it first: plumb lb create ${group}`);
  if (lb.status !== 'active' || lb.ip === '') throw new PlumbError('LB_NOT_READY', `load balancer ${lb.name} is ${lb.status}, not active yet`, '`plumb lb` shows when it is up; run this again then');

  const placements = place(domains, await api.listDomains());
  const missing: Placement[] = [];
  for (const p of placements) {
    const a = (await api.listDomainRecords(p.zone)).filter((r) => r.type === 'A' && r.name === p.recordName);
    const elsewhere = a.find((r) => r.data !== lb.ip);
    if (elsewhere) throw new PlumbError('DNS_RECORD_ELSEWHERE', `${p.domain} has an A record to ${elsewhere.data}, not to the balancer (${lb.ip})`, `change or delete that record at DigitalOcean (Networking > Domains > ${p.zone}), then run this again`);
    if (a.length === 0) missing.push(p);
  }

  const name = certificateName(group, domains);
  const wanted = [...domains].sort().join(',');
  let cert = (await api.listCertificates()).find((c) => c.name === name && c.state !== 'error' && [...c.dns_names].sort().join(',') === wanted);
  const reused = cert !== undefined;
  for (const p of missing) {
    ctx.progress({ step: `pointing ${p.domain} at the balancer (${lb.ip})` });
    await api.createDomainRecord(p.zone, { type: 'A', name: p.recordName, data: lb.ip });
  }
  if (cert === undefined) {
    ctx.progress({ step: `asking DigitalOcean for a Let's Encrypt certificate for ${domains.join(', ')}` });
    cert = await api.createLetsEncryptCertificate(name, domains);
  }
  ctx.progress({ step: `waiting for certificate ${cert.name} to be issued` });
  cert = await waitVerified(api, cert);

  ctx.progress({ step: `adding the ${HTTPS_PORT} rule${opts.redirect ? ' and the redirect from http' : ''} to ${balancerName(group)}` });
  const rules = [
    ...lb.forwardingRules.filter((r) => r.entry_port !== HTTPS_PORT),
    { entry_protocol: 'https', entry_port: HTTPS_PORT, target_protocol: 'http', target_port: 80, certificate_id: cert.id, tls_passthrough: false },
  ] as typeof lb.forwardingRules;
  const updated = await api.updateLoadBalancerRules(lb.id, rules, opts.redirect);
  ctx.progress({ step: 'done', done: true });
  return {
    ...(await lbView(api, group, updated)),
    url: `https://${domains[0]}/`,
    domains,
    certificate: { id: cert.id, name: cert.name, reused },
    redirect: opts.redirect,
  };
}

export interface LbHttpsOffResult {
  group: string;
  name: string;
  ip: string;
  /** false: the balancer had no 443 rule and no redirect, and nothing was changed. */
  changed: boolean;
  removed: Removed;
}

/**
 * `plumb lb https G --off`: the balancer forwards port 80 only again. Its 443 rule and the redirect
 * go, and so does the certificate plumb made for that rule: one no rule uses would only sit in the
 * account (and `plumb lb https` makes a new one within minutes). The domains' A records stay: they
 * still reach the balancer, over http.
 */
export async function lbHttpsOff(group: string, ctx: Context): Promise<LbHttpsOffResult> {
  const checked = checkInput(GroupName, group, 'group name');
  const api = fromEnv(ctx.env);
  const lb = await groupBalancer(api, checked);
  const removed: Removed = { certificates: [], records: [], left: [] };
  const https = lb.forwardingRules.filter((r) => r.entry_port === HTTPS_PORT);
  if (https.length === 0 && !lb.redirectHttpToHttps) return { group: checked, name: lb.name, ip: lb.ip, changed: false, removed };
  ctx.progress({ step: `removing the ${HTTPS_PORT} rule and the redirect from ${lb.name}` });
  await api.updateLoadBalancerRules(lb.id, lb.forwardingRules.filter((r) => r.entry_port !== HTTPS_PORT), false);
  const used = new Set(https.flatMap((r) => (r.certificate_id ? [r.certificate_id] : [])));
  if (used.size > 0) await removeGroupCertificates(api, checked, removed, used);
  ctx.progress({ step: 'done', done: true });
  return { group: checked, name: lb.name, ip: lb.ip, changed: true, removed };
}

export const lbHttpsOffText = (r: LbHttpsOffResult) =>
  r.changed
    ? [`HTTPS is off on ${r.name} (${r.ip}): port 80 serves plain http again, port ${HTTPS_PORT} is closed`, ...removedLines(r.removed)].join('\n')
    : `HTTPS was not on at ${r.name} (${r.ip}): nothing changed`;

export function lbHttpsText(r: LbHttpsResult): string {
  return [
    `${r.url} answers through ${r.name} (${r.ip}); certificate ${r.certificate.name}${r.certificate.reused ? ' (already there)' : ''}, renewed by DigitalOcean`,
    r.redirect ? `http://${r.domains[0]}/ redirects to https` : `http://${r.domains[0]}/ still answers over http (--no-redirect)`,
  ].join('\n');
}
