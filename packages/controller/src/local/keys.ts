import { createHash } from 'node:crypto';
import path from 'node:path';
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import * as z from 'zod';
import { PlumbError, type ControllerKey } from '@plumb/shared';
import { configDir, createPrivateJson, readJson } from './config.js';

/**
 * The controller's Ed25519 signing key, made once and kept in the config dir (0600). Droplets are
 * told its public half; tokens are signed with the private half, which never leaves this machine.
 */
export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: ControllerKey;
}

const StoredKey = z.object({
  kid: z.string(),
  privateJwk: z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string(), d: z.string() }),
});

export async function loadOrCreateSigningKey(dir = configDir()): Promise<SigningKey> {
  return loadSigningKey(dir, true);
}

/** The key droplets trust; without `create`, a missing key is an error (a new one would be trusted nowhere). */
export async function loadSigningKey(dir = configDir(), create = false): Promise<SigningKey> {
  const file = path.join(dir, 'controller-key.json');
  const stored = await readJson(file);
  if (stored === undefined && !create) throw new PlumbError('CONTROLLER_KEY_MISSING', `the controller key ${file} is missing`, 'droplets trust only the key that provisioned them: restore it, or provision new droplets');
  if (stored === undefined) {
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const jwk = await exportJWK(privateKey);
    const privateJwk = StoredKey.shape.privateJwk.parse(jwk);
    // Two plumb commands starting at once on a new machine must end up with one key, not two.
    await createPrivateJson(file, { kid: kidOf(privateJwk.x), privateJwk });
    return loadSigningKey(dir);
  }
  const parsed = StoredKey.safeParse(stored);
  if (!parsed.success) throw new PlumbError('CONTROLLER_KEY_DAMAGED', `the controller key ${file} is damaged`, 'restore it from a backup: droplets trust only this key');
  const { kid, privateJwk } = parsed.data;
  const privateKey = (await importJWK({ ...privateJwk, alg: 'EdDSA' } as JWK, 'EdDSA')) as CryptoKey;
  return { kid, privateKey, publicKey: { kid, jwk: { kty: 'OKP', crv: 'Ed25519', x: privateJwk.x } } };
}

/** A short stable id for a public key: base64url of its SHA-256, 16 characters. */
export function kidOf(x: string): string {
  return createHash('sha256').update(x).digest('base64url').slice(0, 16);
}
