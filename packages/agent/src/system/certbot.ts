import { X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { CERTBOT_TIMEOUT_MS, PlumbError } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { certificateFiles } from '../render/model.js';

/**
 * certbot, run by the agent with argument arrays: `certonly --webroot` only. The agent owns
 * nginx's config, so certbot's nginx plugin (which edits it) is never used; nginx serves the
 * webroot's challenges and the agent turns HTTPS on once the certificate is there.
 */

export interface CertonlyOptions {
  /** The lineage: /etc/letsencrypt/live/NAME. */
  name: string;
  domains: string[];
  email: string;
  /** ACME directory URL. */
  server: string;
  webroot: string;
  /** Renew even if the certificate is still valid. */
  force: boolean;
}

/** `--key=value` throughout, so no value (an email starting with "-") can be read as an option. */
export function certonlyArgs(o: CertonlyOptions): string[] {
  return [
    'certonly',
    '--webroot',
    `--webroot-path=${o.webroot}`,
    '--non-interactive',
    '--agree-tos',
    `--email=${o.email}`,
    '--no-eff-email',
    `--server=${o.server}`,
    `--cert-name=${o.name}`,
    ...o.domains.map((d) => `--domains=${d}`),
    o.force ? '--force-renewal' : '--keep-until-expiring',
  ];
}

/** certbot failed; `reason` is its own account of why (the CA's problem per domain, or its error). */
export class CertbotError extends PlumbError {
  override name = 'CertbotError';
  constructor(readonly reason: string) {
    super('CERTBOT_FAILED', `certbot could not get a certificate: ${reason}`);
  }
}

/** What certbot printed about the failure, without its boilerplate, on one line. */
export function certbotReason(output: string): string {
  const lines = output.split('\n').map((l) => l.trim());
  const field = (from: number, key: string) => {
    for (let i = from + 1; i < lines.length && !lines[i]?.startsWith('Domain:'); i++) {
      const value = new RegExp(`^${key}:\\s*(.*)$`).exec(lines[i] ?? '')?.[1];
      if (value !== undefined) return value;
    }
    return undefined;
  };
  // "The Certificate Authority reported these problems:" then Domain:/Type:/Detail: per domain.
  const problems = lines.flatMap((line, i) => {
    const domain = /^Domain:\s*(\S+)/.exec(line)?.[1];
    if (domain === undefined) return [];
    const type = field(i, 'Type');
    return [`${domain}${type ? ` (${type})` : ''}: ${field(i, 'Detail') ?? 'no detail given'}`];
  });
  if (problems.length > 0) return problems.join('; ');
  const meaningful = lines.filter((l) => l !== '' && !BOILERPLATE.some((re) => re.test(l)));
  const unexpected = meaningful.indexOf('An unexpected error occurred:');
  const said = unexpected >= 0 ? meaningful.slice(unexpected + 1, unexpected + 3) : meaningful.slice(-3);
  return said.join(' ') || 'certbot failed without saying why';
}

const BOILERPLATE = [/^Saving debug log to /, /^Ask for help or search for solutions/, /^(- )+-$/, /^Some challenges have failed\.$/, /^Requesting a certificate for /, /^Renewing an existing certificate for /];

/** Gets (or keeps, while valid and not forced) the certificate; throws a CertbotError with certbot's reason. */
export async function certonly(o: CertonlyOptions): Promise<'issued' | 'kept'> {
  await mkdir(o.webroot, { recursive: true, mode: 0o755 });
  const result = await execa('certbot', certonlyArgs(o), { reject: false, all: true, stdin: 'ignore', timeout: CERTBOT_TIMEOUT_MS });
  if (result.timedOut) throw new CertbotError(`it did not finish within ${CERTBOT_TIMEOUT_MS / 1000} s`);
  if (result.exitCode === undefined) throw new CertbotError(`it could not be run (${result.shortMessage}); is the certbot package installed?`);
  const output = String(result.all ?? '');
  if (result.exitCode !== 0) throw new CertbotError(certbotReason(output));
  return /not yet due for renewal/i.test(output) ? 'kept' : 'issued';
}

/** Forgets a lineage plumb no longer serves, so certbot's timer stops renewing it. */
export async function deleteLineage(name: string): Promise<void> {
  await execa('certbot', ['delete', `--cert-name=${name}`, '--non-interactive'], { reject: false, stdin: 'ignore', timeout: CERTBOT_TIMEOUT_MS });
}

export interface CertificateFacts {
  /** Subject alternative names (DNS). */
  names: string[];
  expiresAt: string;
  serial: string;
  issuer: string;
  /** SHA-256, as node:tls gives a peer's (servedCertificate compares the two). */
  fingerprint: string;
}

/** The certificate a lineage serves now, from its file. */
export async function readCertificate(name: string): Promise<CertificateFacts> {
  const cert = new X509Certificate(await readFile(certificateFiles(name).cert));
  return {
    names: (cert.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4)),
    expiresAt: new Date(cert.validTo).toISOString(),
    serial: cert.serialNumber.toUpperCase(),
    issuer: /(?:^|\n)CN=([^\n]*)/.exec(cert.issuer)?.[1] ?? cert.issuer.replace(/\n/g, ', '),
    fingerprint: cert.fingerprint256,
  };
}

/**
 * certbot runs the scripts in renewal-hooks/deploy after each renewal (certbot.timer): this one
 * reloads nginx, gracefully, so the new certificate is served without a dropped request.
 */
export const DEPLOY_HOOK = '/etc/letsencrypt/renewal-hooks/deploy/plumb-reload-nginx';
export const DEPLOY_HOOK_SCRIPT = `#!/bin/sh
# Written by plumb-agent. certbot runs this after renewing a certificate: nginx reloads (requests
# in flight finish) and serves the new one. Check the config first: a reload of a broken one fails.
set -e
/usr/sbin/nginx -t -q
exec /usr/bin/systemctl reload nginx.service
`;

export async function installDeployHook(): Promise<void> {
  if ((await readFile(DEPLOY_HOOK, 'utf8').catch(() => undefined)) === DEPLOY_HOOK_SCRIPT) return;
  await mkdir(path.dirname(DEPLOY_HOOK), { recursive: true, mode: 0o755 });
  await writeFileAtomic(DEPLOY_HOOK, DEPLOY_HOOK_SCRIPT, 0o755);
}
