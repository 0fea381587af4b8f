import { Router } from 'express';
import { notFound, unprocessable } from './errors.js';
import { md5Fingerprint } from './openssh.js';
import { paginate } from './pagination.js';
import type { SshKeyRecord, Store } from './store.js';

const MAX_NAME_LENGTH = 255;

/** DigitalOcean accepts a key's id or its fingerprint wherever it takes a key. */
export function findSshKey(store: Store, ref: string | number): SshKeyRecord | undefined {
  if (typeof ref === 'number' || /^[0-9]+$/.test(ref)) return store.sshKeys.get(Number(ref));
  for (const key of store.sshKeys.values()) if (key.fingerprint === ref) return key;
  return undefined;
}

const render = (key: SshKeyRecord) => ({
  id: key.id,
  fingerprint: key.fingerprint,
  public_key: key.public_key,
  name: key.name,
});

function validName(body: Record<string, unknown>): string {
  const name = body.name;
  if (typeof name !== 'string' || name.trim() === '') throw unprocessable("Name can't be blank");
  if (name.length > MAX_NAME_LENGTH) throw unprocessable(`Name is too long (maximum is ${MAX_NAME_LENGTH} characters)`);
  return name;
}

export function sshKeyRoutes(store: Store): Router {
  const router = Router();
  const existing = (ref: string | undefined) => {
    const key = ref === undefined ? undefined : findSshKey(store, ref);
    if (key === undefined) throw notFound();
    return key;
  };
  const fields = (body: unknown): Record<string, unknown> =>
    typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};

  router.get('/', (req, res) => {
    const page = paginate(req, [...store.sshKeys.values()]);
    res.json({ ssh_keys: page.items.map(render), links: page.links, meta: page.meta });
  });

  router.post('/', (req, res) => {
    const body = fields(req.body);
    const name = validName(body);
    const publicKey = typeof body.public_key === 'string' ? body.public_key.trim() : '';
    const fingerprint = md5Fingerprint(publicKey);
    if (fingerprint === undefined) throw unprocessable('Key invalid, key should be of the format `type key [comment]`');
    if (findSshKey(store, fingerprint) !== undefined) throw unprocessable('SSH Key is already in use on your account');
    const key: SshKeyRecord = { id: store.nextId('sshKey'), name, public_key: publicKey, fingerprint };
    store.sshKeys.set(key.id, key);
    res.status(201).json({ ssh_key: render(key) });
  });

  router.get('/:ref', (req, res) => {
    res.json({ ssh_key: render(existing(req.params.ref)) });
  });

  router.put('/:ref', (req, res) => {
    const key = existing(req.params.ref);
    key.name = validName(fields(req.body));
    res.json({ ssh_key: render(key) });
  });

  router.delete('/:ref', (req, res) => {
    store.sshKeys.delete(existing(req.params.ref).id);
    res.status(204).end();
  });

  return router;
}
