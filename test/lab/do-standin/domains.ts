import { isIPv4 } from 'node:net';
import { Router } from 'express';
import { notFound, unprocessable } from './errors.js';
import { paginate } from './pagination.js';
import type { DomainRecord, DomainRecordEntry, Store } from './store.js';

/**
 * A minimal /v2/domains: zones "on DigitalOcean DNS" (create, get, list, delete) and their records
 * (list, create, delete). It is what a `lets_encrypt` certificate is checked against; the lab serves no
 * DNS from it (tests reach a balancer by its address).
 */

const ZONE_NAME = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const RECORD_TYPES = ['A', 'AAAA', 'CAA', 'CNAME', 'MX', 'NS', 'SOA', 'SRV', 'TXT'];
const DEFAULT_TTL = 1800;

type Fields = Record<string, unknown>;
const fields = (body: unknown): Fields => (typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Fields) : {});

const zoneFile = (d: DomainRecord) =>
  [`$ORIGIN ${d.name}.`, `$TTL ${d.ttl}`, ...d.records.map((r) => `${r.name === '@' ? `${d.name}.` : r.name} ${r.ttl} IN ${r.type} ${r.data}`)].join('\n') + '\n';
const renderDomain = (d: DomainRecord) => ({ name: d.name, ttl: d.ttl, zone_file: zoneFile(d) });
const renderRecord = (r: DomainRecordEntry) => ({ id: r.id, type: r.type, name: r.name, data: r.data, priority: null, port: null, ttl: r.ttl, weight: null, flags: null, tag: null });

export function domainRoutes(store: Store): Router {
  const router = Router();
  const existing = (name: string | undefined) => {
    const domain = name === undefined ? undefined : store.domains.get(name.toLowerCase());
    if (domain === undefined) throw notFound();
    return domain;
  };
  const addRecord = (domain: DomainRecord, type: string, name: string, data: string): DomainRecordEntry => {
    const record = { id: store.nextId('domainRecord'), type, name, data, ttl: DEFAULT_TTL };
    domain.records.push(record);
    return record;
  };

  router.get('/', (req, res) => {
    const page = paginate(req, [...store.domains.values()]);
    res.json({ domains: page.items.map(renderDomain), links: page.links, meta: page.meta });
  });

  router.post('/', (req, res) => {
    const body = fields(req.body);
    const name = typeof body.name === 'string' ? body.name.toLowerCase() : '';
    if (!ZONE_NAME.test(name)) throw unprocessable('Name is invalid');
    if (store.domains.has(name)) throw unprocessable('Name already exists');
    if (body.ip_address !== undefined && (typeof body.ip_address !== 'string' || !isIPv4(body.ip_address))) throw unprocessable('ip_address must be an IPv4 address.');
    const domain: DomainRecord = { name, ttl: DEFAULT_TTL, records: [] };
    for (const ns of ['ns1', 'ns2', 'ns3']) addRecord(domain, 'NS', '@', `${ns}.digitalocean.com.`);
    if (typeof body.ip_address === 'string') addRecord(domain, 'A', '@', body.ip_address);
    store.domains.set(name, domain);
    res.status(201).json({ domain: { name, ttl: domain.ttl, zone_file: null } });
  });

  router.get('/:name', (req, res) => {
    res.json({ domain: renderDomain(existing(req.params.name)) });
  });

  router.delete('/:name', (req, res) => {
    store.domains.delete(existing(req.params.name).name);
    res.status(204).set('content-type', 'application/json; charset=utf-8').end();
  });

  router.get('/:name/records', (req, res) => {
    const page = paginate(req, existing(req.params.name).records);
    res.json({ domain_records: page.items.map(renderRecord), links: page.links, meta: page.meta });
  });

  router.post('/:name/records', (req, res) => {
    const domain = existing(req.params.name);
    const body = fields(req.body);
    const type = body.type;
    if (typeof type !== 'string' || !RECORD_TYPES.includes(type)) throw unprocessable(`type must be one of ${RECORD_TYPES.join(', ')}.`);
    if (typeof body.name !== 'string' || body.name === '') throw unprocessable('Name is invalid');
    if (typeof body.data !== 'string' || (type === 'A' && !isIPv4(body.data))) throw unprocessable('Data needs to be a valid IP address');
    res.status(201).json({ domain_record: renderRecord(addRecord(domain, type, body.name, body.data)) });
  });

  router.delete('/:name/records/:id', (req, res) => {
    const domain = existing(req.params.name);
    const at = domain.records.findIndex((r) => String(r.id) === req.params.id);
    if (at < 0) throw notFound();
    domain.records.splice(at, 1);
    res.status(204).set('content-type', 'application/json; charset=utf-8').end();
  });
  return router;
}
