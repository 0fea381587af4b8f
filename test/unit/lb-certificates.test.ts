import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { certificateName, removeGroupCertificates, removedLines, type Removed } from '@plumb/controller/commands/lb';
import { DigitalOcean } from '@plumb/controller/digitalocean/client';
import { LabCertificateAuthority } from '../lab/certificate-authority.js';
import { startDoStandin } from '../lab/do-standin/index.js';
import { ScriptedMachines } from './do-test-machines.js';

/**
 * The clean-up of `plumb lb destroy` and `lb https --off` over the real client and the stand-in:
 * DigitalOcean refuses to delete a certificate for a moment after the balancer that used it is
 * gone (403 "Make sure the certificate is not in use before deleting it"), and plumb asks again
 * within a bound, as Terraform's DigitalOcean provider does.
 */

// axios honours proxy variables; the stand-in is always local.
process.env.NO_PROXY = '127.0.0.1,localhost';

const TOKEN = 'lb-token';

/** A group's certificate on its balancer, then the balancer deleted: the stand-in counts the certificate in use for `releaseMs` more. */
async function balancerGone(t: TestContext, releaseMs: number) {
  const dir = await mkdtemp(path.join(tmpdir(), 'plumb-lb-cert-'));
  const standin = await startDoStandin({ tokens: [TOKEN], machines: new ScriptedMachines(), certificateReleaseMs: releaseMs });
  t.after(async () => {
    await standin.close();
    await rm(dir, { recursive: true, force: true });
  });
  const call = async (method: string, apiPath: string, body: unknown) => {
    const res = await fetch(`${standin.endpoint}${apiPath}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.ok(res.ok, `${method} ${apiPath}: ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as Record<string, { id: string }>;
  };
  const pems = await new LabCertificateAuthority(dir).issue(['api.example.com']);
  const name = certificateName('web', ['api.example.com']);
  const cert = (await call('POST', '/certificates', { name, type: 'custom', private_key: pems.key, leaf_certificate: pems.leaf })).certificate!.id;
  const lb = (
    await call('POST', '/load_balancers', {
      name: 'plumb-web',
      region: 'nyc3',
      tag: 'plumb-group:web',
      forwarding_rules: [
        { entry_protocol: 'http', entry_port: 80, target_protocol: 'http', target_port: 80 },
        { entry_protocol: 'https', entry_port: 443, target_protocol: 'http', target_port: 80, certificate_id: cert },
      ],
    })
  ).load_balancer!.id;
  const api = new DigitalOcean({ token: TOKEN, apiUrl: standin.endpoint });
  await api.deleteLoadBalancer(lb);
  return { api, name, deletes: () => standin.requests.count('DELETE', `/v2/certificates/${cert}`), left: async () => (await api.listCertificates()).map((c) => c.name) };
}

test('lb clean-up: a certificate DigitalOcean still counts in use after the balancer is gone is deleted once it lets go', async (t) => {
  const { api, name, deletes, left } = await balancerGone(t, 300);
  const removed: Removed = { certificates: [], records: [], left: [] };
  await removeGroupCertificates(api, 'web', removed, undefined, { timeoutMs: 5_000, intervalMs: 50 });
  assert.deepEqual(removed, { certificates: [name], records: [], left: [] });
  assert.ok(deletes() > 1, `refused first, then deleted (${deletes()} deletes)`);
  assert.deepEqual(await left(), []);
});

test('lb clean-up: one still in use when the bound is up is listed as not removed, with why, and the clean-up goes on', async (t) => {
  const { api, name, left } = await balancerGone(t, 60_000);
  const removed: Removed = { certificates: [], records: [], left: [] };
  await removeGroupCertificates(api, 'web', removed, undefined, { timeoutMs: 200, intervalMs: 50 });
  assert.deepEqual(removed.certificates, []);
  assert.deepEqual(removedLines(removed), [`  NOT removed: ${name}: DigitalOcean still counted it in use 0.2 s after the balancer let it go (remove it in the control panel)`]);
  assert.deepEqual(await left(), [name]);
});
