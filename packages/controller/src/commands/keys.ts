import { checkInput, ControllerKey, KeyId, KeyName, ValidationError, type KeysResult } from '@plumb/shared';
import { eachDroplet, withAgent, type PerDroplet } from '../agent/connect.js';
import type { Context } from '../context.js';
import { kidOf, loadOrCreateSigningKey } from '../local/keys.js';

/**
 * Controller keys (docs/security.md, "Controller keys"): each machine that runs plumb has its own
 * signing key; a droplet trusts the keys listed in its agent's config. A teammate prints theirs
 * with `plumb keys show`, the owner adds it with `plumb keys add`, and anyone trusted can revoke a
 * key other than their own.
 */

/** How a public key travels between people: `ed25519:` and the key's 32 bytes, base64url. */
const PREFIX = 'ed25519:';

export interface ShownKey {
  kid: string;
  publicKey: string;
}

/** This machine's public key, made on first use; nothing secret is printed. */
export async function showKey(ctx: Context): Promise<ShownKey> {
  const key = await loadOrCreateSigningKey(ctx.configDir);
  return { kid: key.kid, publicKey: `${PREFIX}${key.publicKey.jwk.x}` };
}

/** A key as `plumb keys show` prints it, checked, with its id derived as the controller derives its own. */
export function parsePublicKey(text: string, name: string): ControllerKey & { name: string } {
  const x = text.trim().startsWith(PREFIX) ? text.trim().slice(PREFIX.length) : '';
  const key = { kid: kidOf(x), jwk: { kty: 'OKP' as const, crv: 'Ed25519' as const, x }, name: checkInput(KeyName, name, 'key name') };
  if (!ControllerKey.shape.jwk.safeParse(key.jwk).success) {
    throw new ValidationError(`invalid public key "${text}": expected ${PREFIX} and 43 base64url characters`, 'copy the line `plumb keys show` prints on the other machine');
  }
  return key;
}

export interface KeysOptions {
  droplet?: string;
  all?: boolean;
}

export function listKeys(opts: KeysOptions, ctx: Context): Promise<PerDroplet<KeysResult>[]> {
  return eachDroplet(ctx, opts, (d) => withAgent(ctx, String(d.id), ({ connection }) => connection.request<KeysResult>({ type: 'keys' })));
}

export function addKey(opts: KeysOptions & { name: string; key: string }, ctx: Context): Promise<PerDroplet<KeysResult>[]> {
  const key = parsePublicKey(opts.key, opts.name);
  return eachDroplet(ctx, opts, (d) => withAgent(ctx, String(d.id), ({ connection }) => connection.request<KeysResult>({ type: 'keys-add', key })));
}

export function revokeKey(opts: KeysOptions & { key: string }, ctx: Context): Promise<PerDroplet<KeysResult>[]> {
  const which = KeyName.safeParse(opts.key).success ? opts.key : checkInput(KeyId, opts.key, 'key (a name or id from `plumb keys list`)');
  return eachDroplet(ctx, opts, (d) => withAgent(ctx, String(d.id), ({ connection }) => connection.request<KeysResult>({ type: 'keys-revoke', key: which })));
}

/** `plumb keys list|add|revoke` as text: per droplet, its keys, this machine's marked. */
export function keysText(rows: PerDroplet<KeysResult>[], verb: string): string {
  return rows
    .map((r) => {
      if (r.error) return `${r.droplet}: ${r.error.message}${r.error.hint ? `\n  ${r.error.hint}` : ''}`;
      const lines = r.result.keys.map((k) => `  ${(k.name ?? '(provisioning key)').padEnd(20)} ${k.kid}${k.caller ? '  (this machine)' : ''}`);
      return [`${r.droplet}: ${verb}${r.result.changed ? '' : ' (nothing changed)'}`, ...lines].join('\n');
    })
    .join('\n');
}
