import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { AgentConfig } from '@plumb/shared';
import { AgentConnection, agentAnswers, enrol, type AgentAddress } from '@plumb/controller/agent/client';
import { loadOrCreateSigningKey, type SigningKey } from '@plumb/controller/local/keys';
import { tokenFor } from '@plumb/controller/agent/tokens';
import { agentAuthCases, type AuthTarget } from '../cases/agent-auth.cases.js';
import { agentFrameCases } from '../cases/agent-frames.cases.js';
import { agentLimitCases } from '../cases/agent-limits.cases.js';

/** The agent's trust rules against a real agent process on loopback (its TLS, its config, its state). */

const AGENT_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../packages/agent/dist/main.js');

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

describe('a local plumb-agent', () => {
  let dir: string;
  let agent: ChildProcess;
  let key: SigningKey;
  let address: AgentAddress;
  const dropletUuid = randomUUID();
  const secret = randomBytes(16).toString('hex');
  let pin = '';

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-agent-'));
    key = await loadOrCreateSigningKey(path.join(dir, 'controller'));
    address = { host: '127.0.0.1', port: await freePort() };
    const config: AgentConfig = { dropletUuid, dropletName: 'local', port: address.port, host: '127.0.0.1', controllerKeys: [key.publicKey], enrolmentSecret: secret };
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
    agent = spawn(process.execPath, [AGENT_MAIN], {
      env: { ...process.env, PLUMB_AGENT_CONFIG: path.join(dir, 'config.json'), PLUMB_AGENT_STATE_DIR: path.join(dir, 'state') },
      stdio: 'ignore',
    });
    for (let i = 0; i < 100 && !(await agentAnswers(address)); i++) await new Promise((r) => setTimeout(r, 100));
  });

  after(async () => {
    agent?.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });

  test('before enrolment the agent opens no socket, even for a valid token (403)', async () => {
    const cert = await readFile(path.join(dir, 'state/tls/agent.crt'), 'utf8');
    const fingerprint = createHash('sha256').update(new X509Certificate(cert).raw).digest('hex');
    await assert.rejects(AgentConnection.open(address, fingerprint, await tokenFor(key, dropletUuid)), /HTTP 403/);
  });

  test('enrolment: the agent proves the secret over its own certificate, then burns the secret', async () => {
    pin = await enrol(address, await tokenFor(key, dropletUuid), secret);
    assert.match(pin, /^[0-9a-f]{64}$/);
    const config = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as AgentConfig;
    assert.equal(config.enrolmentSecret, undefined);
  });

  test('enrolment: a second enrolment is refused', async () => {
    await assert.rejects(enrol(address, await tokenFor(key, dropletUuid), secret), /already enrolled/);
  });

  test('enrolment: a controller holding the wrong secret rejects the proof', async () => {
    const other = randomUUID();
    const otherDir = await mkdtemp(path.join(os.tmpdir(), 'plumb-agent-'));
    const otherAddress = { host: '127.0.0.1', port: await freePort() };
    const config: AgentConfig = { dropletUuid: other, dropletName: 'other', port: otherAddress.port, host: '127.0.0.1', controllerKeys: [key.publicKey], enrolmentSecret: randomBytes(16).toString('hex') };
    await writeFile(path.join(otherDir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
    const child = spawn(process.execPath, [AGENT_MAIN], { env: { ...process.env, PLUMB_AGENT_CONFIG: path.join(otherDir, 'config.json'), PLUMB_AGENT_STATE_DIR: path.join(otherDir, 'state') }, stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !(await agentAnswers(otherAddress)); i++) await new Promise((r) => setTimeout(r, 100));
      await assert.rejects(enrol(otherAddress, await tokenFor(key, other), secret), /could not prove/);
    } finally {
      child.kill('SIGTERM');
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  agentAuthCases((): AuthTarget => ({ address, dropletUuid, pin, key }));
  agentFrameCases((): AuthTarget => ({ address, dropletUuid, pin, key }));
  agentLimitCases((): AuthTarget => ({ address, dropletUuid, pin, key }));
});
