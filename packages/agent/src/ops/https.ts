import { mkdir } from 'node:fs/promises';
import type { CertificateInfo, HttpsResult, Request } from '@plumb/shared';
import { log } from '../log.js';
import type { AgentState, CertificateRecord } from '../state.js';
import { CertbotError, certonly, deleteLineage, installDeployHook, readCertificate } from '../system/certbot.js';
import { layout } from '../system/layout.js';
import { reloadNginx, servedCertificate } from '../system/nginx.js';
import * as ufw from '../system/ufw.js';
import { SHARED, StepError, UFW_LOCK, type OpContext } from './context.js';
import { applyNginxOf, changeRouting } from './routing.js';

export type HttpsRequest = Extract<Request, { type: 'https' }>;

/** One `plumb https` at a time: certbot itself refuses to run twice at once. */
const HTTPS_LOCK = 'https';
const HTTPS_RULE = '443/tcp';

/** certbot's --cert-name: the first domain (a DomainName, so a safe file name). */
export const certificateName = (domains: readonly string[]) => domains[0] ?? '';

/**
 * The state once `record` serves its domains. An older certificate gives up the domains the new
 * one names (a domain is served by one certificate); one left with none is dropped, and returned
 * so its lineage can go too.
 */
export function withCertificate(state: AgentState, record: CertificateRecord): { next: AgentState; dropped: string[] } {
  const taken = new Set(record.domains);
  const dropped: string[] = [];
  const others = (state.https?.certificates ?? []).flatMap((c) => {
    if (c.name === record.name) return [];
    const domains = c.domains.filter((d) => !taken.has(d));
    if (domains.length === 0) dropped.push(c.name);
    return domains.length === 0 ? [] : [{ ...c, domains }];
  });
  const certificates = [...others, record].sort((a, b) => (a.name < b.name ? -1 : 1));
  return { next: { ...state, https: { certificates } }, dropped };
}

/**
 * plumber's do_configure_https(), without certbot's nginx plugin: open 443, `certbot certonly
 * --webroot` (nginx already serves the challenge directory), then the HTTPS servers and the
 * redirect in nginx (tested, reloaded). A failure at any step leaves nginx, the firewall and the
 * state as they were, and says what certbot said.
 */
export async function https(req: HttpsRequest, ctx: OpContext): Promise<HttpsResult> {
  return ctx.locks.with(HTTPS_LOCK, () => httpsLocked(req, ctx), () => ctx.progress('waiting for another plumb https to finish'));
}

async function httpsLocked(req: HttpsRequest, ctx: OpContext): Promise<HttpsResult> {
  const started = Date.now();
  const name = certificateName(req.domains);

  // nginx must be the agent's (challenge directory included) before the CA asks for a challenge.
  ctx.progress('serving ACME challenges from nginx');
  await mkdir(layout.acmeWebroot, { recursive: true, mode: 0o755 });
  await ctx.locks.with(SHARED, () => applyNginxOf(ctx.state.get()));

  // The firewall's files from the snapshot to a possible undo are this operation's: a `plumb
  // firewall` meanwhile would otherwise be written back over by the undo (one lock for ufw).
  const { outcome, dropped, opened443, routing, onDisk } = await ctx.locks.with(UFW_LOCK, async () => {
    const firewall = await ufw.snapshot();
    ctx.progress('opening port 443 in the firewall');
    const opened = await ufw.allow(HTTPS_RULE);
    try {
      ctx.progress('asking the ACME server for a certificate', `${req.domains.join(', ')} from ${req.server}`);
      const got = await certonly({ name, domains: req.domains, email: req.email, server: req.server, webroot: layout.acmeWebroot, force: req.force }).catch((err: unknown) => {
        if (!(err instanceof CertbotError)) throw err;
        throw new StepError(err.code, 'certificate', err.message, [], hintFor(err.reason));
      });
      const facts = await readCertificate(name);
      const missing = req.domains.filter((d) => !facts.names.includes(d));
      if (missing.length > 0) throw new StepError('CERTIFICATE_MISMATCH', 'certificate', `the certificate ${name} does not name ${missing.join(', ')}`, [], 'run plumb https again with --force');
      await installDeployHook();

      ctx.progress('turning HTTPS on in nginx');
      let lineagesDropped: string[] = [];
      const nginx = await changeRouting(ctx, (state) => {
        const previous = state.https?.certificates.find((c) => c.name === name);
        const issuedAt = got === 'kept' && previous ? previous.issuedAt : new Date().toISOString();
        const change = withCertificate(state, { name, domains: req.domains, email: req.email, server: req.server, issuedAt });
        lineagesDropped = change.dropped;
        return change.next;
      });
      return { outcome: got, dropped: lineagesDropped, opened443: opened, routing: nginx, onDisk: facts.fingerprint };
    } catch (err) {
      if (opened) {
        await ufw.undoAllow(HTTPS_RULE, firewall).catch((undo: Error) => log.error('could not close 443 again', { error: undo.message }));
      }
      throw err;
    }
  });
  // nginx reads certificate files only when it (re)loads. A changed config was reloaded after
  // certbot wrote them, and that once is enough. Otherwise a new certificate is in files nginx
  // already uses (certbot's deploy hook, if it ran, only signalled nginx), and a kept one may not
  // be served either: a reload that failed after the state was saved (the command erred), or a
  // renewal whose hook did not run. One TLS handshake on loopback tells, rather than a reload on
  // every rerun, which would close every client's idle keep-alive connection for nothing. It is
  // served once new workers run, and only then is it said to be.
  // Lineages the state dropped first: nginx's config no longer names them, and a reload that fails
  // below must not leave them to certbot's renewals (a rerun no longer knows them).
  for (const lineage of dropped) await deleteLineage(lineage);
  if (routing !== 'reloaded' && (outcome === 'issued' || (await servedCertificate(name)) !== onDisk)) {
    ctx.progress(outcome === 'issued' ? 'reloading nginx to serve the new certificate' : 'reloading nginx to serve the certificate on disk');
    await ctx.locks.with(SHARED, () => reloadNginx());
    // Something else may answer for the domain on 443 (a site of the droplet's own that nginx prefers).
    if ((await servedCertificate(name)) !== onDisk) {
      log.warn('nginx serves another certificate than the one on disk after a reload', { certificate: name, domain: req.domains[0] });
      ctx.progress(`warning: after a reload nginx still serves another certificate for ${req.domains[0]} on 443: another site on the droplet may answer for it (sudo nginx -T | grep -n ${req.domains[0]})`);
    }
  }

  const certificates = await certificateInfos(ctx.state.get());
  const certificate = certificates.find((c) => c.name === name);
  if (!certificate) throw new StepError('CERTIFICATE_UNREADABLE', 'certificate', `cannot read the certificate ${name} just installed`);
  log.info('https', { certificate: name, domains: req.domains.join(' '), outcome, took_ms: Date.now() - started });
  return { certificate, outcome, opened443, certificates, tookMs: Date.now() - started };
}

function hintFor(reason: string): string {
  const validation = /\((connection|unauthorized|dns|tls)\)/.test(reason);
  return [
    'nothing was changed: nginx and the firewall are as they were, HTTP still serves.',
    validation ? ' The CA could not fetch the challenge over HTTP: each domain must resolve to this droplet and port 80 must reach it.' : '',
  ].join('');
}

/** The certificates nginx serves, as their files say now (a renewal shows at once); unreadable ones are left out and logged. */
async function certificateInfos(state: AgentState): Promise<CertificateInfo[]> {
  const infos: CertificateInfo[] = [];
  for (const record of state.https?.certificates ?? []) {
    try {
      const facts = await readCertificate(record.name);
      infos.push({ name: record.name, domains: record.domains, expiresAt: facts.expiresAt, serial: facts.serial, issuer: facts.issuer });
    } catch (err) {
      log.warn('certificate unreadable', { certificate: record.name, error: (err as Error).message });
    }
  }
  return infos;
}
