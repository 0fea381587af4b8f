import { createHash, X509Certificate } from 'node:crypto';
import { access, mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/**
 * The agent's own TLS identity, made on first start and kept: a P-256 key that never leaves the
 * droplet and a self-signed certificate whose SHA-256 fingerprint the controller pins.
 */
export interface TlsIdentity {
  key: string;
  cert: string;
  fingerprint: string;
}

const VALID_DAYS = '3650';

export async function loadOrCreateIdentity(stateDir: string, commonName: string): Promise<TlsIdentity> {
  const dir = path.join(stateDir, 'tls');
  const keyFile = path.join(dir, 'agent.key');
  const certFile = path.join(dir, 'agent.crt');
  if (!(await exists(certFile))) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Made under temporary names and renamed, so a crash never leaves a key without its certificate.
    await execa('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${keyFile}.new`, '-out', `${certFile}.new`, '-days', VALID_DAYS, '-subj', `/CN=${commonName}`,
    ]);
    await rename(`${keyFile}.new`, keyFile);
    await rename(`${certFile}.new`, certFile);
  }
  const cert = await readFile(certFile, 'utf8');
  return { key: await readFile(keyFile, 'utf8'), cert, fingerprint: fingerprintOf(cert) };
}

/** SHA-256 over the certificate's DER, lower-case hex (what the controller compares). */
export function fingerprintOf(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}
