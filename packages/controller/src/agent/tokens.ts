import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { audienceFor, TOKEN_TTL_SECONDS } from '@plumb/shared';
import type { SigningKey } from '../local/keys.js';

/** A fresh, single-use token for one droplet's agent: EdDSA, its audience, short `exp`, unique `jti`. */
export async function tokenFor(key: SigningKey, dropletUuid: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid })
    .setAudience(audienceFor(dropletUuid))
    .setIssuedAt()
    .setExpirationTime(`${TOKEN_TTL_SECONDS}s`)
    .setJti(randomUUID())
    .sign(key.privateKey);
}
