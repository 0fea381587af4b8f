import { createHash } from 'node:crypto';
import { checkInput, DigitalOceanError, DROPLET_HEALTH_PATH, GroupName, groupTag, LB_CERTIFICATE_DELETE_RETRY_MS, LB_CERTIFICATE_DELETE_WAIT_MS, PlumbError, pollUntil, wholeNumber } from '@plumb/shared';
import type { Context } from '../context.js';
import { fromEnv, type DigitalOcean, type LoadBalancer } from '../digitalocean/client.js';

/** How long a new balancer may stay `new` before plumb stops waiting. */
export const LOAD_BALANCER_ACTIVE_TIMEOUT_MS = 10 * 60_000;
const POLL_MS = 1000;

export interface LbCreateOptions {
  group: string;
  region: string;
  /** DigitalOcean's health check settings (its own defaults when omitted). */
  checkIntervalSeconds?: number;
  responseTimeoutSeconds?: number;
  unhealthyThreshold?: number;
  healthyThreshold?: number;
}

export interface LbView {
  group: string;
  id: string;
  name: string;
  ip: string;
  status: string;
  /** Seconds until a failing droplet is out: interval x unhealthy threshold. */
  unhealthyWindowSeconds: number;
  droplets: { id: number; name: string; healthy: boolean | null }[];
}

/** The balancer plumb makes for group NAME is named plumb-NAME: how it is found again, with no local state. */
export const balancerName = (group: string) => `plumb-${group}`;

/**
 * The certificates `plumb lb https` makes for group G are named plumb-G-HASH (HASH: 10 hex digits of
 * the sorted names), so they are found again, and told from the user's own, with no local state.
 */
export const certificateName = (group: string, domains: string[]) => `plumb-${group}-${createHash('sha256').update([...domains].sort().join(',')).digest('hex').slice(0, 10)}`;
export const isGroupCertificate = (group: string, name: string) => name.startsWith(`plumb-${group}-`) && /^[0-9a-f]{10}$/.test(name.slice(`plumb-${group}-`.length));

/** What a clean-up removed, and what it could not (with why): the rest of it went on. */
export interface Removed {
  certificates: string[];
  records: string[];
  left: string[];
}

/** Deletes one thing a clean-up found; a failure is noted and the clean-up goes on. */
async function attempt(what: string, list: string[], left: string[], work: () => Promise<void>): Promise<void> {
  try {
    await work();
    list.push(what);
  } catch (err) {
    left.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** How long a certificate's deletion is retried while DigitalOcean counts it in use, and how often. */
export interface CertificateDeleteWait {
  timeoutMs: number;
  intervalMs: number;
}

const IN_USE = /not in use before deleting/i;

/**
 * Deletes a certificate, asking again while DigitalOcean still counts it in use: it does for a
 * moment after the balancer that used it was deleted or dropped its rule (403 "Make sure the
 * certificate is not in use before deleting it"; Terraform's provider retries it the same way).
 */
async function deleteWhenFree(api: DigitalOcean, id: string, wait: CertificateDeleteWait): Promise<void> {
  const deleted = await pollUntil(
    async () => {
      try {
        await api.deleteCertificate(id);
        return true;
      } catch (err) {
        if (!(err instanceof DigitalOceanError && err.status === 403 && IN_USE.test(err.message))) throw err;
        return undefined;
      }
    },
    wait,
  );
  if (!deleted) throw new PlumbError('DIGITALOCEAN_REJECTED', `DigitalOcean still counted it in use ${wait.timeoutMs / 1000} s after the balancer let it go`);
}

/** The group's certificates that plumb made (all of them, or those with these ids), deleted. */
export async function removeGroupCertificates(api: DigitalOcean, group: string, removed: Removed, only?: Set<string>, wait: CertificateDeleteWait = { timeoutMs: LB_CERTIFICATE_DELETE_WAIT_MS, intervalMs: LB_CERTIFICATE_DELETE_RETRY_MS }): Promise<void> {
  // A listing that fails is said, not thrown: the balancer may be gone already, and a re-run would not find it again.
  const certificates = await api.listCertificates().catch((err: unknown) => void removed.left.push(`the certificates of group ${group} (listing them failed: ${err instanceof Error ? err.message : String(err)})`));
  for (const cert of certificates ?? []) {
    if (isGroupCertificate(group, cert.name) && (only === undefined || only.has(cert.id))) await attempt(cert.name, removed.certificates, removed.left, () => deleteWhenFree(api, cert.id, wait));
  }
}

/**
 * Every A record in the account's zones that points at `ip`, deleted: once the balancer is gone its
 * address goes back to DigitalOcean's pool, and a name left pointing there would reach whoever gets it next.
 */
async function removeRecordsTo(api: DigitalOcean, ip: string, removed: Removed): Promise<void> {
  if (ip === '') return;
  const failed = (what: string) => (err: unknown) => void removed.left.push(`${what} (listing them failed: ${err instanceof Error ? err.message : String(err)})`);
  for (const zone of (await api.listDomains().catch(failed(`the A records to ${ip}`))) ?? []) {
    for (const record of ((await api.listDomainRecords(zone).catch(failed(`the A records to ${ip} in ${zone}`))) ?? []).filter((r) => r.type === 'A' && r.data === ip)) {
      await attempt(`${record.name === '@' ? zone : `${record.name}.${zone}`} A ${ip}`, removed.records, removed.left, () => api.deleteDomainRecord(zone, record.id));
    }
  }
}

export function removedLines(r: Removed): string[] {
  return [
    ...r.certificates.map((c) => `  removed certificate ${c}`),
    ...r.records.map((d) => `  removed DNS record ${d}`),
    ...r.left.map((l) => `  NOT removed: ${l} (remove it in the control panel)`),
  ];
}

export async function findBalancer(api: DigitalOcean, group: string): Promise<LoadBalancer | undefined> {
  return (await api.listLoadBalancers()).find((lb) => lb.name === balancerName(group));
}

/** The group's balancer; LB_UNKNOWN (with `hint`) when the group has none. */
export async function groupBalancer(api: DigitalOcean, group: string, hint = '`plumb lb` lists them'): Promise<LoadBalancer> {
  const lb = await findBalancer(api, group);
  if (!lb) throw new PlumbError('LB_UNKNOWN', `group ${group} has no load balancer`, hint);
  return lb;
}

export async function lbView(api: DigitalOcean, group: string, lb: LoadBalancer): Promise<LbView> {
  const [health, members] = await Promise.all([lb.status === 'active' ? api.loadBalancerHealth(lb.id) : new Map<number, boolean>(), api.listDroplets({ tag: groupTag(group) })]);
  const interval = lb.healthCheck.check_interval_seconds ?? 10;
  return {
    group,
    id: lb.id,
    name: lb.name,
    ip: lb.ip,
    status: lb.status,
    unhealthyWindowSeconds: interval * (lb.healthCheck.unhealthy_threshold ?? 5),
    droplets: lb.dropletIds.map((id) => ({ id, name: members.find((d) => d.id === id)?.name ?? String(id), healthy: health.get(id) ?? null })),
  };
}

/**
 * A DigitalOcean Load Balancer in front of group NAME: it targets the group's tag (droplets added
 * later join by themselves), forwards port 80, and checks each droplet's DROPLET_HEALTH_PATH,
 * which answers 200 only while every API on the droplet answers.
 */
export async function lbCreate(opts: LbCreateOptions, ctx: Context): Promise<LbView> {
  const group = checkInput(GroupName, opts.group, 'group name');
  const seconds = wholeNumber(3, 300);
  const threshold = wholeNumber(2, 10);
  const healthCheck = {
    protocol: 'http',
    port: 80,
    path: DROPLET_HEALTH_PATH,
    check_interval_seconds: checkInput(seconds, opts.checkIntervalSeconds ?? 10, '--check-interval'),
    response_timeout_seconds: checkInput(seconds, opts.responseTimeoutSeconds ?? 5, '--check-timeout'),
    unhealthy_threshold: checkInput(threshold, opts.unhealthyThreshold ?? 3, '--unhealthy-threshold'),
    healthy_threshold: checkInput(threshold, opts.healthyThreshold ?? 3, '--healthy-threshold'),
  };
  const api = fromEnv(ctx.env);
  if (await findBalancer(api, group)) throw new PlumbError('LB_EXISTS', `group ${group} has a load balancer already`, '`plumb lb` shows it; `plumb lb destroy GROUP` removes it');
  ctx.progress({ step: `creating load balancer ${balancerName(group)} for tag ${groupTag(group)}` });
  let lb = await api.createLoadBalancer({
    name: balancerName(group),
    region: opts.region,
    tag: groupTag(group),
    forwardingRules: [{ entry_protocol: 'http', entry_port: 80, target_protocol: 'http', target_port: 80 }],
    healthCheck,
  });
  ctx.progress({ step: 'waiting for the load balancer to be active' });
  const active = await pollUntil(
    async (attempt) => {
      if (attempt > 0) lb = await api.getLoadBalancer(lb.id);
      if (lb.status === 'errored') throw new PlumbError('LB_ERRORED', `DigitalOcean reports load balancer ${lb.name} errored`, `remove it with \`plumb lb destroy ${group}\` and try again`);
      return lb.status === 'active' && lb.ip !== '' ? lb : undefined;
    },
    { timeoutMs: LOAD_BALANCER_ACTIVE_TIMEOUT_MS, intervalMs: POLL_MS },
  );
  if (!active) throw new PlumbError('LB_NOT_READY', `load balancer ${lb.name} is still ${lb.status} after ${LOAD_BALANCER_ACTIVE_TIMEOUT_MS / 60_000} minutes`, '`plumb lb` shows when it is up');
  lb = active;
  ctx.progress({ step: 'done', done: true });
  return lbView(api, group, lb);
}

/** Every group's balancer (or one group's), with each droplet's health as the balancer sees it. */
export async function lbList(opts: { group?: string }, ctx: Context): Promise<LbView[]> {
  const api = fromEnv(ctx.env);
  const all = (await api.listLoadBalancers()).filter((lb) => lb.name.startsWith('plumb-') && lb.tag.startsWith(groupTag('')));
  const wanted = opts.group === undefined ? all : all.filter((lb) => lb.name === balancerName(checkInput(GroupName, opts.group ?? '', 'group name')));
  return Promise.all(wanted.map((lb) => lbView(api, lb.tag.slice(groupTag('').length), lb)));
}

export interface LbDestroyResult {
  group: string;
  id: string;
  name: string;
  /** What `plumb lb https` had made for it: its certificates and the A records to its address. */
  removed: Removed;
}

/**
 * Deletes the group's balancer, then what `plumb lb https` made for it: the certificates named
 * plumb-G-HASH and the A records pointing at its address (the user's other certificates and
 * records stay). The certificates go after the balancer, which holds them while it lives.
 */
export async function lbDestroy(group: string, ctx: Context): Promise<LbDestroyResult> {
  const checked = checkInput(GroupName, group, 'group name');
  const api = fromEnv(ctx.env);
  const lb = await groupBalancer(api, checked);
  await api.deleteLoadBalancer(lb.id);
  const removed: Removed = { certificates: [], records: [], left: [] };
  await removeGroupCertificates(api, checked, removed);
  await removeRecordsTo(api, lb.ip, removed);
  return { group: checked, id: lb.id, name: lb.name, removed };
}

export const lbDestroyText = (r: LbDestroyResult) => [`destroyed load balancer ${r.name} (${r.id}); the droplets of group ${r.group} stay`, ...removedLines(r.removed)].join('\n');

export function lbText(rows: LbView[]): string {
  if (rows.length === 0) return 'no load balancers (create one with `plumb lb create GROUP`)';
  return rows
    .map((r) =>
      [
        `${r.name} (group ${r.group}) ${r.status} at ${r.ip || '(no address yet)'}; a failing droplet is out after ${r.unhealthyWindowSeconds} s`,
        ...r.droplets.map((d) => `  ${d.name} (${d.id}): ${d.healthy === null ? 'unknown' : d.healthy ? 'healthy' : 'unhealthy'}`),
        ...(r.droplets.length === 0 ? ['  no droplets carry the group tag yet'] : []),
      ].join('\n'),
    )
    .join('\n');
}
