import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { CertificateIssuer, CertificatePems } from './do-standin/index.js';
import { LabError } from './errors.js';

/**
 * The CA behind the stand-in's `lets_encrypt` certificates: what DigitalOcean gets from Let's
 * Encrypt, the lab signs itself (the stand-in owns the zone, so there is no challenge to answer).
 * A test trusts `caPem()` to check the balancer's TLS. Made on first use, in the lab's state
 * directory; its key never leaves it.
 */
export class LabCertificateAuthority implements CertificateIssuer {
  private ready: Promise<void> | undefined;
  private serial = 0;

  constructor(private readonly dir: string) {}

  async caPem(): Promise<string> {
    await this.ensure();
    return readFile(join(this.dir, 'ca.pem'), 'utf8');
  }

  async issue(dnsNames: string[]): Promise<CertificatePems> {
    await this.ensure();
    this.serial += 1;
    const base = join(this.dir, `leaf-${this.serial}`);
    // Extensions meet OpenSSL's X509_STRICT checks, as a public CA's certificate does.
    await writeFile(`${base}.cnf`, [
      '[leaf]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = serverAuth',
      `subjectAltName = ${dnsNames.map((d) => `DNS:${d}`).join(',')}`,
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
      '',
    ].join('\n'));
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${dnsNames[0] ?? 'lab'}`]);
    // Let's Encrypt's lifetime: 90 days.
    await openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', join(this.dir, 'ca.pem'), '-CAkey', join(this.dir, 'ca.key'), '-extfile', `${base}.cnf`, '-extensions', 'leaf', '-days', '90', '-out', `${base}.pem`]);
    const [leaf, key] = await Promise.all([readFile(`${base}.pem`, 'utf8'), readFile(`${base}.key`, 'utf8')]);
    return { leaf, key, chain: '' };
  }

  private ensure(): Promise<void> {
    return (this.ready ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const cnf = join(this.dir, 'ca.cnf');
      await writeFile(cnf, ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', '[ca]', 'basicConstraints = critical,CA:TRUE,pathlen:0', 'keyUsage = critical,keyCertSign,cRLSign', 'subjectKeyIdentifier = hash', ''].join('\n'));
      await openssl(['req', '-x509', '-config', cnf, '-extensions', 'ca', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc', '-keyout', join(this.dir, 'ca.key'), '-out', join(this.dir, 'ca.pem'), '-days', '3650', '-subj', '/CN=plumb lab certificates CA']);
    })());
  }
}

async function openssl(args: string[]): Promise<void> {
  const r = await execa('openssl', args, { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new LabError(`openssl ${args[0]} failed: ${String(r.stderr).trim() || r.shortMessage}`);
}
