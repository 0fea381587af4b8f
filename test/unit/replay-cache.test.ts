import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { audienceFor, REPLAY_CACHE_MAX_ENTRIES, TOKEN_CLOCK_TOLERANCE_SECONDS, TOKEN_TTL_SECONDS } from '@plumb/shared';
import { TokenVerifier } from '@plumb/agent/auth';
import { loadOrCreateSigningKey } from '@plumb/controller/local/keys';

/**
 * The agent remembers every token's jti until the token expires, to refuse a replay; a controller
 * (or anyone holding a key) can fill that memory only up to REPLAY_CACHE_MAX_ENTRIES live tokens.
 * Crossed at its real size against the agent's own verifier, with a clock the test moves.
 */
test(`the replay cache holds ${REPLAY_CACHE_MAX_ENTRIES} live tokens, refuses one more, and takes new ones once those expire`, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-replay-'));
  try {
    const key = await loadOrCreateSigningKey(dir);
    const dropletUuid = randomUUID();
    let nowMs = Date.UTC(2026, 10, 28, 12, 0, 0);
    const verifier = await TokenVerifier.create(dropletUuid, [key.publicKey], () => nowMs);
    const tokenAt = (seconds: number) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid })
        .setAudience(audienceFor(dropletUuid))
        .setIssuedAt(seconds)
        .setExpirationTime(seconds + TOKEN_TTL_SECONDS)
        .setJti(randomUUID())
        .sign(key.privateKey);
    const bearer = async (seconds: number) => `Bearer ${await tokenAt(seconds)}`;

    const start = nowMs / 1000;
    for (let i = 0; i < REPLAY_CACHE_MAX_ENTRIES; i++) assert.equal(await verifier.verify(await bearer(start)), key.kid);
    await assert.rejects(verifier.verify(await bearer(start)), /too many live tokens/);

    // Once the remembered tokens can no longer be used, they are forgotten and a new token is taken.
    nowMs += (TOKEN_TTL_SECONDS + TOKEN_CLOCK_TOLERANCE_SECONDS + 1) * 1000;
    const later = await bearer(nowMs / 1000);
    assert.equal(await verifier.verify(later), key.kid);
    await assert.rejects(verifier.verify(later), /token replayed/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
