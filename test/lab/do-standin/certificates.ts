import { createPrivateKey, randomUUID, X509Certificate } from 'node:crypto';
import { Router } from 'express';
import { forbidden, notFound, unprocessable } from './errors.js';
import { paginate } from './pagination.js';
import { queryParam } from './request.js';
import { timestamp, type CertificatePems, type CertificateRecord, type Store } from './store.js';

/**
 * /v2/certificates as DigitalOcean documents it: `custom` (the user's PEMs, verified at once) and
 * `lets_encrypt` (DigitalOcean answers the DNS-01 challenge itself, so every name's zone must be
 * on its DNS; `pending` until issued, then `verified`). The lab's certificates come from an
 * issuer the lab gives (its own CA), so a test can trust them.
 */

export interface CertificateIssuer {
  /** A certificate for these names, as the Let's Encrypt of the lab issues it. */
  issue(dnsNames: string[]): Promise<CertificatePems>;
}

/** No issuing at all: lets_encrypt certificates stay `pending` (the shape-only tests never need one). */
export class NoIssuer implements CertificateIssuer {
  issue(): Promise<CertificatePems> {
    return new Promise(() => {});
  }
}

const NAME_RULE = /^[a-zA-Z0-9._-]{1,255}$/;
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

type Fields = Record<string, unknown>;
const isObject = (v: unknown): v is Fields => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The zone on DigitalOcean DNS that holds NAME (its longest suffix that is a domain), if any. */
export function zoneOf(store: Store, name: string): string | undefined {
  const labels = name.replace(/^\*\./, '').split('.');
  for (let i = 0; i < labels.length - 1; i++) {
    const candidate = labels.slice(i).join('.');
    if (store.domains.has(candidate)) return candidate;
  }
  return undefined;
}

export function renderCertificate(cert: CertificateRecord) {
  return {
    id: cert.id,
    name: cert.name,
    not_after: cert.notAfter || '0001-01-01T00:00:00Z',
    sha1_fingerprint: cert.sha1,
    created_at: cert.createdAt,
    dns_names: cert.dnsNames,
    state: cert.state,
    type: cert.type,
  };
}

function describe(pems: CertificatePems): { sha1: string; notAfter: string; dnsNames: string[] } {
  const leaf = new X509Certificate(pems.leaf);
  const dnsNames = (leaf.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
  return { sha1: leaf.fingerprint.replace(/:/g, '').toLowerCase(), notAfter: timestamp(new Date(leaf.validTo)), dnsNames };
}

function customPems(body: Fields): CertificatePems {
  const { private_key: key, leaf_certificate: leaf, certificate_chain: chain } = body;
  if (typeof key !== 'string' || typeof leaf !== 'string') throw unprocessable('private_key and leaf_certificate are required for a custom certificate.');
  if (chain !== undefined && typeof chain !== 'string') throw unprocessable('certificate_chain must be a string.');
  try {
    if (!new X509Certificate(leaf).checkPrivateKey(createPrivateKey(key))) throw new Error('mismatch');
  } catch {
    throw unprocessable('the leaf certificate and the private key do not match or are not valid PEM.');
  }
  return { leaf, key, chain: chain ?? '' };
}

export function certificateRoutes(store: Store, issuer: CertificateIssuer): Router {
  const router = Router();
  const existing = (id: string | undefined) => {
    const cert = id === undefined ? undefined : store.certificates.get(id);
    if (cert === undefined) throw notFound();
    return cert;
  };

  router.get('/', (req, res) => {
    const name = queryParam(req, 'name');
    const page = paginate(req, [...store.certificates.values()].filter((c) => name === undefined || c.name === name));
    res.json({ certificates: page.items.map(renderCertificate), links: page.links, meta: page.meta });
  });

  router.post('/', (req, res) => {
    const body: Fields = isObject(req.body) ? req.body : {};
    const name = body.name;
    if (typeof name !== 'string' || !NAME_RULE.test(name)) throw unprocessable('name is required: letters, numbers, dots, dashes and underscores.');
    if ([...store.certificates.values()].some((c) => c.name === name)) throw unprocessable(`a certificate named ${name} already exists.`);
    const base = { id: randomUUID(), name, createdAt: timestamp() };
    let cert: CertificateRecord;
    if (body.type === 'custom' || body.type === undefined) {
      const pems = customPems(body);
      cert = { ...base, type: 'custom', state: 'verified', pems, ...describe(pems) };
    } else if (body.type === 'lets_encrypt') {
      const dnsNames = body.dns_names;
      if (!Array.isArray(dnsNames) || dnsNames.length === 0 || !dnsNames.every((d) => typeof d === 'string' && DNS_NAME.test(d))) {
        throw unprocessable('dns_names must list the fully qualified domain names of the certificate.');
      }
      // DigitalOcean's own text for a name whose zone is not on its DNS.
      if (dnsNames.some((d) => zoneOf(store, d as string) === undefined)) throw unprocessable('one or more of the provided domains are not managed by DigitalOcean');
      cert = { ...base, type: 'lets_encrypt', state: 'pending', dnsNames: [...new Set(dnsNames as string[])], notAfter: '', sha1: '' };
      const issuing = cert;
      issuer.issue(issuing.dnsNames).then(
        (pems) => Object.assign(issuing, { state: 'verified', pems, ...describe(pems), dnsNames: issuing.dnsNames }),
        () => Object.assign(issuing, { state: 'error' }),
      );
    } else {
      throw unprocessable('type must be custom or lets_encrypt.');
    }
    store.certificates.set(cert.id, cert);
    res.status(201).json({ certificate: renderCertificate(cert) });
  });

  router.get('/:id', (req, res) => {
    res.json({ certificate: renderCertificate(existing(req.params.id)) });
  });

  router.delete('/:id', (req, res) => {
    const cert = existing(req.params.id);
    const user = [...store.loadBalancers.values()].find((lb) => lb.forwardingRules.some((r) => r.certificate_id === cert.id));
    const held = (store.certificateHolds.get(cert.id) ?? 0) > Date.now();
    // DigitalOcean's 403 and words (the ones its Terraform provider waits out).
    if (user !== undefined || held) throw forbidden(`certificate ${cert.name} is in use${user ? ` by load balancer ${user.name}` : ''}. Make sure the certificate is not in use before deleting it.`);
    store.certificates.delete(cert.id);
    store.certificateHolds.delete(cert.id);
    res.status(204).set('content-type', 'application/json; charset=utf-8').end();
  });
  return router;
}
