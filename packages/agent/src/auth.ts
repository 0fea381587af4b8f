import { importJWK, jwtVerify, decodeProtectedHeader, type CryptoKey, type KeyObject } from 'jose';
import {
  audienceFor,
  PlumbError,
  REPLAY_CACHE_MAX_ENTRIES,
  TOKEN_CLOCK_TOLERANCE_SECONDS,
  TOKEN_MAX_LIFETIME_SECONDS,
  type ControllerKey,
} from '@plumb/shared';

/** Why a token was refused; logged on the droplet, never told to the caller beyond "401". */
export class AuthError extends PlumbError {
  override name = 'AuthError';
  constructor(reason: string) {
    super('UNAUTHORIZED', reason);
  }
}

type Key = CryptoKey | KeyObject | Uint8Array;

async function importKeys(controllerKeys: readonly ControllerKey[]): Promise<Map<string, Key>> {
  const keys = new Map<string, Key>();
  for (const key of controllerKeys) keys.set(key.kid, await importJWK({ ...key.jwk, alg: 'EdDSA' }, 'EdDSA'));
  return keys;
}

/**
 * Checks controller tokens: EdDSA only, signed by an authorized controller key (by `kid`), for
 * this droplet's audience, with `exp` (short) and a `jti` never seen before.
 */
export class TokenVerifier {
  private readonly seen = new Map<string, number>();
  /** The second of the last sweep of expired jtis: one sweep a second, not one a request (a full cache is 100k entries). */
  private sweptAt = -1;

  private constructor(
    private readonly audience: string,
    private keys: Map<string, Key>,
    private readonly now: () => number,
  ) {}

  static async create(dropletUuid: string, controllerKeys: readonly ControllerKey[], now = () => Date.now()): Promise<TokenVerifier> {
    return new TokenVerifier(audienceFor(dropletUuid), await importKeys(controllerKeys), now);
  }

  /** From now on only these keys are trusted (plumb keys add / revoke). */
  async setKeys(controllerKeys: readonly ControllerKey[]): Promise<void> {
    this.keys = await importKeys(controllerKeys);
  }

  /** Returns the controller key id that signed the token, or throws AuthError. */
  async verify(authorization: string | undefined): Promise<string> {
    const token = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(authorization ?? '')?.[1];
    if (!token) throw new AuthError('no bearer token');
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw new AuthError('malformed token');
    }
    const key = kid === undefined ? undefined : this.keys.get(kid);
    if (!key || kid === undefined) throw new AuthError(`token signed by an unknown key (${kid ?? 'no kid'})`);
    const nowSeconds = Math.floor(this.now() / 1000);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms: ['EdDSA'],
        audience: this.audience,
        requiredClaims: ['exp', 'iat', 'jti'],
        maxTokenAge: TOKEN_MAX_LIFETIME_SECONDS,
        clockTolerance: TOKEN_CLOCK_TOLERANCE_SECONDS,
        currentDate: new Date(nowSeconds * 1000),
      }));
    } catch (err) {
      throw new AuthError(`token refused: ${(err as Error).message}`);
    }
    const exp = payload.exp ?? 0;
    if (exp - (payload.iat ?? 0) > TOKEN_MAX_LIFETIME_SECONDS) throw new AuthError('token lives too long');
    const jti = String(payload.jti);
    this.forgetExpired(nowSeconds);
    if (this.seen.has(jti)) throw new AuthError('token replayed');
    if (this.seen.size >= REPLAY_CACHE_MAX_ENTRIES) throw new AuthError('too many live tokens');
    this.seen.set(jti, exp + TOKEN_CLOCK_TOLERANCE_SECONDS);
    return kid;
  }

  private forgetExpired(nowSeconds: number): void {
    if (nowSeconds === this.sweptAt) return;
    this.sweptAt = nowSeconds;
    for (const [jti, until] of this.seen) if (until < nowSeconds) this.seen.delete(jti);
  }
}
