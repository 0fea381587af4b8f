import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { generateKeyPair, SignJWT } from 'jose';
import { audienceFor, TOKEN_CLOCK_TOLERANCE_SECONDS, TOKEN_MAX_LIFETIME_SECONDS } from '@plumb/shared';
import { AgentConnection, connectTls, PinMismatchError, type AgentAddress } from '@plumb/controller/agent/client';
import { tokenFor } from '@plumb/controller/agent/tokens';
import type { SigningKey } from '@plumb/controller/local/keys';
import { agentSocket, upgradeStatus as statusOf } from './agent-socket.js';

/**
 * How an enrolled agent treats tokens, run against any agent: a local one (unit tests) and the one
 * on a lab droplet (end to end). Every refusal must be HTTP 401 to the upgrade: no WebSocket.
 */
export interface AuthTarget {
  address: AgentAddress;
  dropletUuid: string;
  pin: string;
  key: SigningKey;
}

/** The status the agent answers an upgrade with (101 when it accepted); `authorization` undefined: none sent. */
async function upgradeStatus(target: AuthTarget, authorization: string | undefined): Promise<number> {
  const { ws } = await agentSocket(target, authorization ?? null);
  const status = await statusOf(ws);
  ws.terminate();
  return status;
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

export function agentAuthCases(target: () => AuthTarget): void {
  const now = () => Math.floor(Date.now() / 1000);
  /** A token signed with the controller's key, issued at `iat` and expiring at `exp` (seconds). */
  const signed = (t: AuthTarget, iat: number, exp: number) =>
    new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: t.key.kid }).setAudience(audienceFor(t.dropletUuid)).setIssuedAt(iat).setExpirationTime(exp).setJti(randomUUID()).sign(t.key.privateKey);

  test('agent: a valid token opens the socket and the agent says hello first', async () => {
    const t = target();
    const connection = await AgentConnection.open(t.address, t.pin, await tokenFor(t.key, t.dropletUuid));
    assert.equal(connection.hello.dropletUuid, t.dropletUuid);
    assert.equal(connection.hello.enrolled, true);
    connection.close();
  });

  test('agent: no token is refused with 401 before any WebSocket exists', async () => {
    assert.equal(await upgradeStatus(target(), undefined), 401);
  });

  test('agent: an expired token is refused with 401', async () => {
    const t = target();
    assert.equal(await upgradeStatus(t, `Bearer ${await signed(t, now() - 200, now() - 100)}`), 401);
  });

  test(`agent: a token living ${TOKEN_MAX_LIFETIME_SECONDS} s opens the socket; one living a second longer is refused with 401`, async () => {
    const t = target();
    const iat = now();
    assert.equal(await upgradeStatus(t, `Bearer ${await signed(t, iat, iat + TOKEN_MAX_LIFETIME_SECONDS)}`), 101);
    assert.equal(await upgradeStatus(t, `Bearer ${await signed(t, iat, iat + TOKEN_MAX_LIFETIME_SECONDS + 1)}`), 401);
  });

  test(`agent: a token that expired within the ${TOKEN_CLOCK_TOLERANCE_SECONDS} s clock tolerance still opens; one past it is refused with 401`, async () => {
    const t = target();
    // 5 s of margin either side: the agent's clock reads the time a moment after this one does.
    const within = now() - TOKEN_CLOCK_TOLERANCE_SECONDS + 5;
    assert.equal(await upgradeStatus(t, `Bearer ${await signed(t, within - 60, within)}`), 101);
    const past = now() - TOKEN_CLOCK_TOLERANCE_SECONDS - 5;
    assert.equal(await upgradeStatus(t, `Bearer ${await signed(t, past - 60, past)}`), 401);
  });

  test('agent: a token without exp is refused with 401', async () => {
    const t = target();
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: t.key.kid }).setAudience(audienceFor(t.dropletUuid)).setIssuedAt().setJti(randomUUID()).sign(t.key.privateKey);
    assert.equal(await upgradeStatus(t, `Bearer ${token}`), 401);
  });

  test('agent: a token for another droplet is refused with 401', async () => {
    const t = target();
    assert.equal(await upgradeStatus(t, `Bearer ${await tokenFor(t.key, randomUUID())}`), 401);
  });

  test('agent: a replayed token is refused with 401', async () => {
    const t = target();
    const token = await tokenFor(t.key, t.dropletUuid);
    assert.equal(await upgradeStatus(t, `Bearer ${token}`), 101);
    assert.equal(await upgradeStatus(t, `Bearer ${token}`), 401);
  });

  test('agent: alg "none" is refused with 401', async () => {
    const t = target();
    const token = `${b64({ alg: 'none', kid: t.key.kid })}.${b64({ aud: audienceFor(t.dropletUuid), iat: now(), exp: now() + 60, jti: randomUUID() })}.`;
    assert.equal(await upgradeStatus(t, `Bearer ${token}`), 401);
  });

  test('agent: a token signed by an unknown key is refused with 401, also under a known kid', async () => {
    const t = target();
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = (kid: string) => new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid }).setAudience(audienceFor(t.dropletUuid)).setIssuedAt().setExpirationTime('60s').setJti(randomUUID()).sign(privateKey);
    assert.equal(await upgradeStatus(t, `Bearer ${await forged('someone-else-key')}`), 401);
    assert.equal(await upgradeStatus(t, `Bearer ${await forged(t.key.kid)}`), 401);
  });

  test('controller: an agent whose certificate is not the pinned one is refused before the token is sent', async () => {
    const t = target();
    const wrongPin = 'f'.repeat(64);
    await assert.rejects(connectTls(t.address, wrongPin), PinMismatchError);
    await assert.rejects(AgentConnection.open(t.address, wrongPin, await tokenFor(t.key, t.dropletUuid)), /not the pinned/);
  });
}
