import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { LabCertificateAuthority } from '../lab/certificate-authority.js';
import { startDoStandin, type StartedDoStandin } from '../lab/do-standin/index.js';
import { OpenApiContract, type Answer } from './do-openapi.js';
import { ScriptedMachines } from './do-test-machines.js';

/**
 * The stand-in against DigitalOcean's own OpenAPI spec: every endpoint it implements, answering
 * successfully and with each error the spec documents for it (or its `default`), is checked for
 * body and headers. Requests go over HTTP with fetch, so what is checked is what a client gets.
 */

process.env.NO_PROXY = '127.0.0.1,localhost';

const TOKEN = 'contract-token';
let contract: OpenApiContract;
let standin: StartedDoStandin;
let machines: ScriptedMachines;
let caDir: string;
let ca: LabCertificateAuthority;
/** Which statuses were checked per operation, to prove the coverage claimed below. */
const checked = new Map<string, Set<string>>();

before(async () => {
  contract = OpenApiContract.load();
  machines = new ScriptedMachines();
  caDir = await mkdtemp(path.join(tmpdir(), 'plumb-contract-ca-'));
  ca = new LabCertificateAuthority(caDir);
  standin = await startDoStandin({ tokens: [TOKEN], machines, issuer: ca });
});
after(async () => {
  await standin.close();
  await rm(caDir, { recursive: true, force: true });
});

interface Call {
  method: string;
  /** Under /v2, with query: /droplets?tag_name=x */
  path: string;
  body?: unknown;
  token?: string | null;
}

async function call({ method, path, body, token = TOKEN }: Call): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${standin.endpoint}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return {
    method,
    path: new URL(res.url).pathname,
    status: res.status,
    headers: res.headers,
    body: text === '' ? undefined : (JSON.parse(text) as unknown),
  };
}

/** Makes the call, asserts the status, checks the answer against the spec, and returns the body. */
async function create(path: string, body: unknown, key: string): Promise<number> {
  return idOf((await call({ method: 'POST', path, body })).body, key);
}

/** A balancer is `new` until its proxy listens, then `active` with an address. */
async function waitActive(id: string): Promise<{ droplet_ids: number[]; ip: string }> {
  for (let i = 0; i < 100; i++) {
    const body = (await conforms({ method: 'GET', path: `/load_balancers/${id}` }, 200)) as { load_balancer: { status: string; droplet_ids: number[]; ip: string } };
    if (body.load_balancer.status === 'active') return body.load_balancer;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`load balancer ${id} never became active`);
}

async function conforms(request: Call, status: number): Promise<unknown> {
  const answer = await call(request);
  assert.equal(answer.status, status, `${request.method} ${request.path}: ${JSON.stringify(answer.body)}`);
  const verdict = contract.check(answer);
  assert.deepEqual(verdict.problems, [], verdict.problems.join('\n'));
  assert.ok(verdict.operation !== undefined);
  const statuses = checked.get(verdict.operation) ?? new Set<string>();
  statuses.add(String(status));
  checked.set(verdict.operation, statuses);
  return answer.body;
}

const idOf = (body: unknown, key: string): number => {
  const id = (body as Record<string, { id?: unknown }>)[key]?.id;
  assert.equal(typeof id, 'number', `no ${key}.id in ${JSON.stringify(body)}`);
  return id as number;
};

const dropletRequest = { size: 's-1vcpu-1gb', image: 'debian-13-x64', region: 'ams3' };
const lbRequest = {
  name: 'web-lb',
  region: 'ams3',
  forwarding_rules: [{ entry_protocol: 'http', entry_port: 80, target_protocol: 'http', target_port: 80 }],
  health_check: { protocol: 'http', port: 80, path: '/__plumb/health', check_interval_seconds: 3, response_timeout_seconds: 3, unhealthy_threshold: 2, healthy_threshold: 2 },
  tag: 'plumb-group:web',
};
const lbIdOf = (body: unknown): string => {
  const id = (body as { load_balancer?: { id?: unknown } }).load_balancer?.id;
  assert.equal(typeof id, 'string', `no load_balancer.id in ${JSON.stringify(body)}`);
  return id as string;
};
const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEtyuG2RYz076Fwx82E3zwNmi4ES9vLvUtNCQ34BrfLm lab@plumb';

/** Every operation the stand-in implements, each with a path that reaches an existing resource. */
function operations(ids: { droplet: number; action: number; key: number; lb: string; certificate: string; domain: string; record: number }): Call[] {
  const rule = { entry_protocol: 'tcp', entry_port: 8443, target_protocol: 'tcp', target_port: 8443 };
  return [
    { method: 'GET', path: '/certificates' },
    { method: 'POST', path: '/certificates', body: { name: 'c', type: 'lets_encrypt', dns_names: [`www.${ids.domain}`] } },
    { method: 'GET', path: `/certificates/${ids.certificate}` },
    { method: 'DELETE', path: `/certificates/${ids.certificate}` },
    { method: 'GET', path: '/domains' },
    { method: 'POST', path: '/domains', body: { name: 'other.example' } },
    { method: 'GET', path: `/domains/${ids.domain}` },
    { method: 'DELETE', path: `/domains/${ids.domain}` },
    { method: 'GET', path: `/domains/${ids.domain}/records` },
    { method: 'POST', path: `/domains/${ids.domain}/records`, body: { type: 'A', name: 'www', data: '192.0.2.1' } },
    { method: 'DELETE', path: `/domains/${ids.domain}/records/${ids.record}` },
    { method: 'GET', path: '/load_balancers' },
    { method: 'POST', path: '/load_balancers', body: lbRequest },
    { method: 'GET', path: `/load_balancers/${ids.lb}` },
    { method: 'PUT', path: `/load_balancers/${ids.lb}`, body: lbRequest },
    { method: 'DELETE', path: `/load_balancers/${ids.lb}` },
    { method: 'POST', path: `/load_balancers/${ids.lb}/droplets`, body: { droplet_ids: [ids.droplet] } },
    { method: 'DELETE', path: `/load_balancers/${ids.lb}/droplets`, body: { droplet_ids: [ids.droplet] } },
    { method: 'POST', path: `/load_balancers/${ids.lb}/forwarding_rules`, body: { forwarding_rules: [rule] } },
    { method: 'DELETE', path: `/load_balancers/${ids.lb}/forwarding_rules`, body: { forwarding_rules: [rule] } },
    { method: 'GET', path: `/monitoring/metrics/load_balancer/droplets_health_checks?lb_id=${ids.lb}&start=1&end=2` },
    { method: 'GET', path: '/account' },
    { method: 'GET', path: '/account/keys' },
    { method: 'POST', path: '/account/keys', body: { name: 'k', public_key: publicKey } },
    { method: 'GET', path: `/account/keys/${ids.key}` },
    { method: 'PUT', path: `/account/keys/${ids.key}`, body: { name: 'renamed' } },
    { method: 'DELETE', path: `/account/keys/${ids.key}` },
    { method: 'GET', path: '/droplets' },
    { method: 'POST', path: '/droplets', body: { ...dropletRequest, name: 'x' } },
    { method: 'DELETE', path: '/droplets?tag_name=contract' },
    { method: 'GET', path: `/droplets/${ids.droplet}` },
    { method: 'DELETE', path: `/droplets/${ids.droplet}` },
    { method: 'GET', path: `/droplets/${ids.droplet}/actions` },
    { method: 'POST', path: `/droplets/${ids.droplet}/actions`, body: { type: 'reboot' } },
    { method: 'GET', path: `/droplets/${ids.droplet}/actions/${ids.action}` },
    { method: 'POST', path: '/tags', body: { name: 'adopted' } },
    { method: 'POST', path: '/tags/contract/resources', body: { resources: [{ resource_id: String(ids.droplet), resource_type: 'droplet' }] } },
    { method: 'GET', path: '/actions' },
    { method: 'GET', path: `/actions/${ids.action}` },
    { method: 'GET', path: '/regions' },
    { method: 'GET', path: '/sizes' },
    { method: 'GET', path: '/images' },
  ];
}

test('contract: successful answers of every implemented endpoint match the spec', async () => {
  await conforms({ method: 'GET', path: '/account' }, 200);

  const key = await conforms({ method: 'POST', path: '/account/keys', body: { name: 'laptop', public_key: publicKey } }, 201);
  const keyId = idOf(key, 'ssh_key');
  const fingerprint = (key as { ssh_key: { fingerprint: string } }).ssh_key.fingerprint;
  await conforms({ method: 'GET', path: `/account/keys/${keyId}` }, 200);
  await conforms({ method: 'GET', path: `/account/keys/${fingerprint}` }, 200);
  await conforms({ method: 'PUT', path: `/account/keys/${keyId}`, body: { name: 'desktop' } }, 200);
  await conforms({ method: 'GET', path: '/account/keys?per_page=1' }, 200);

  const tagged = { ...dropletRequest, tags: ['contract'] };
  const single = await conforms(
    { method: 'POST', path: '/droplets', body: { ...tagged, name: 'web-1', ssh_keys: [keyId], backups: true } },
    202,
  );
  const dropletId = idOf(single, 'droplet');
  const many = await conforms({ method: 'POST', path: '/droplets', body: { ...tagged, names: ['m-1', 'm-2'] } }, 202);
  const droplets = [{ id: dropletId }, ...(many as { droplets: { id: number }[] }).droplets];
  await conforms({ method: 'GET', path: `/droplets/${dropletId}` }, 200);
  machines.boot(dropletId);
  const active = await conforms({ method: 'GET', path: `/droplets/${dropletId}` }, 200);
  assert.equal((active as { droplet: { status: string } }).droplet.status, 'active');
  await conforms({ method: 'GET', path: '/droplets?per_page=1&page=2' }, 200);
  await conforms({ method: 'GET', path: '/droplets?tag_name=contract' }, 200);
  await conforms({ method: 'POST', path: '/tags', body: { name: 'adopted' } }, 201);
  await conforms({ method: 'POST', path: '/tags/adopted/resources', body: { resources: [{ resource_id: String(dropletId), resource_type: 'droplet' }] } }, 204);
  assert.deepEqual(((await call({ method: 'GET', path: `/droplets/${dropletId}` })).body as { droplet: { tags: string[] } }).droplet.tags, ['contract', 'adopted']);

  const action = await conforms({ method: 'POST', path: `/droplets/${dropletId}/actions`, body: { type: 'reboot' } }, 201);
  const actionId = idOf(action, 'action');
  await conforms({ method: 'GET', path: `/actions/${actionId}` }, 200);
  await conforms({ method: 'GET', path: `/droplets/${dropletId}/actions/${actionId}` }, 200);
  await conforms({ method: 'GET', path: `/droplets/${dropletId}/actions` }, 200);
  await conforms({ method: 'GET', path: '/actions?per_page=2' }, 200);

  await conforms({ method: 'GET', path: '/regions?per_page=2&page=2' }, 200);
  await conforms({ method: 'GET', path: '/sizes' }, 200);
  await conforms({ method: 'GET', path: '/images?type=distribution' }, 200);

  const lb = lbIdOf(await conforms({ method: 'POST', path: '/load_balancers', body: { ...lbRequest, tag: 'contract' } }, 202));
  const balancer = await waitActive(lb);
  assert.deepEqual(balancer.droplet_ids.sort(), [...droplets.map((d) => d.id)].sort(), 'a tag-targeted balancer lists the tagged droplets');
  await conforms({ method: 'GET', path: '/load_balancers?per_page=1' }, 200);
  await conforms({ method: 'PUT', path: `/load_balancers/${lb}`, body: { ...lbRequest, tag: 'contract', name: 'renamed' } }, 200);
  const rule = { entry_protocol: 'https', entry_port: 443, target_protocol: 'https', target_port: 443, tls_passthrough: true };
  await conforms({ method: 'POST', path: `/load_balancers/${lb}/forwarding_rules`, body: { forwarding_rules: [rule] } }, 204);
  await conforms({ method: 'DELETE', path: `/load_balancers/${lb}/forwarding_rules`, body: { forwarding_rules: [rule] } }, 204);
  const health = await conforms({ method: 'GET', path: `/monitoring/metrics/load_balancer/droplets_health_checks?lb_id=${lb}&start=1&end=2` }, 200);
  assert.deepEqual((health as { data: { result: { metric: { droplet_id: string } }[] } }).data.result.map((r) => Number(r.metric.droplet_id)).sort(), balancer.droplet_ids.sort());
  const byId = lbIdOf(await conforms({ method: 'POST', path: '/load_balancers', body: { ...lbRequest, tag: undefined, droplet_ids: [] } }, 202));
  await conforms({ method: 'POST', path: `/load_balancers/${byId}/droplets`, body: { droplet_ids: [dropletId] } }, 204);
  await conforms({ method: 'DELETE', path: `/load_balancers/${byId}/droplets`, body: { droplet_ids: [dropletId] } }, 204);
  await conforms({ method: 'DELETE', path: `/load_balancers/${byId}` }, 204);
  await conforms({ method: 'DELETE', path: `/load_balancers/${lb}` }, 204);

  // HTTPS on a balancer: a zone on DigitalOcean DNS, a Let's Encrypt certificate for a name in it
  // (pending, then verified), a custom one, and a 443 rule that terminates TLS with a redirect.
  await conforms({ method: 'POST', path: '/domains', body: { name: 'example.com', ip_address: '192.0.2.1' } }, 201);
  await conforms({ method: 'GET', path: '/domains/example.com' }, 200);
  await conforms({ method: 'GET', path: '/domains?per_page=1' }, 200);
  await conforms({ method: 'POST', path: '/domains/example.com/records', body: { type: 'A', name: 'api', data: '192.0.2.2' } }, 201);
  const records = (await conforms({ method: 'GET', path: '/domains/example.com/records' }, 200)) as { domain_records: { id: number; type: string; name: string; data: string }[] };
  assert.ok(records.domain_records.some((r) => r.type === 'A' && r.name === 'api' && r.data === '192.0.2.2'));
  const apex = records.domain_records.find((r) => r.type === 'A' && r.name === '@');
  assert.ok(apex, 'the zone was made with an apex A record');
  await conforms({ method: 'DELETE', path: `/domains/example.com/records/${apex.id}` }, 204);
  const left = (await conforms({ method: 'GET', path: '/domains/example.com/records' }, 200)) as { domain_records: { id: number }[] };
  assert.ok(!left.domain_records.some((r) => r.id === apex.id), 'the deleted record is gone');
  const created = (await conforms({ method: 'POST', path: '/certificates', body: { name: 'api-cert', type: 'lets_encrypt', dns_names: ['api.example.com'] } }, 201)) as { certificate: { id: string; state: string } };
  assert.equal(created.certificate.state, 'pending', 'a Let\'s Encrypt certificate starts pending');
  const certId = created.certificate.id;
  let verified: { state: string; dns_names: string[]; sha1_fingerprint: string } | undefined;
  for (let i = 0; i < 100 && verified === undefined; i++) {
    const { certificate } = (await conforms({ method: 'GET', path: `/certificates/${certId}` }, 200)) as { certificate: { state: string; dns_names: string[]; sha1_fingerprint: string } };
    if (certificate.state === 'verified') verified = certificate;
    else await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(verified, 'the certificate became verified');
  assert.deepEqual(verified.dns_names, ['api.example.com']);
  assert.match(verified.sha1_fingerprint, /^[0-9a-f]{40}$/);
  const pems = await ca.issue(['custom.example.com']);
  await conforms({ method: 'POST', path: '/certificates', body: { name: 'custom-cert', type: 'custom', private_key: pems.key, leaf_certificate: pems.leaf } }, 201);
  await conforms({ method: 'GET', path: '/certificates?per_page=1' }, 200);
  const tls = { entry_protocol: 'https', entry_port: 443, target_protocol: 'http', target_port: 80, certificate_id: certId };
  const secure = lbIdOf(await conforms({ method: 'POST', path: '/load_balancers', body: { ...lbRequest, name: 'secure' } }, 202));
  const updated = (await conforms({ method: 'PUT', path: `/load_balancers/${secure}`, body: { ...lbRequest, name: 'secure', forwarding_rules: [...lbRequest.forwarding_rules, tls], redirect_http_to_https: true } }, 200)) as { load_balancer: { redirect_http_to_https: boolean; forwarding_rules: { certificate_id: string }[] } };
  assert.equal(updated.load_balancer.redirect_http_to_https, true);
  assert.equal(updated.load_balancer.forwarding_rules[1]?.certificate_id, certId);
  await conforms({ method: 'DELETE', path: `/certificates/${certId}` }, 403);
  await conforms({ method: 'DELETE', path: `/load_balancers/${secure}` }, 204);
  await conforms({ method: 'DELETE', path: `/certificates/${certId}` }, 204);
  await conforms({ method: 'DELETE', path: '/domains/example.com' }, 204);

  await conforms({ method: 'DELETE', path: `/droplets/${dropletId}` }, 204);
  await conforms({ method: 'DELETE', path: '/droplets?tag_name=contract' }, 204);
  await conforms({ method: 'DELETE', path: `/account/keys/${fingerprint}` }, 204);
});

test('contract: 401, 429, 500 and 503 answers of every implemented endpoint match the spec', async () => {
  const droplet = await create('/droplets', { ...dropletRequest, name: 'target', tags: ['contract'] }, 'droplet');
  const key = await create('/account/keys', { name: 'k', public_key: publicKey }, 'ssh_key');
  const actions = (await call({ method: 'GET', path: `/droplets/${droplet}/actions` })).body as { actions: { id: number }[] };
  const actionId = actions.actions[0]?.id ?? 0;
  const lb = lbIdOf((await call({ method: 'POST', path: '/load_balancers', body: { ...lbRequest, tag: undefined, droplet_ids: [droplet] } })).body);
  const domain = 'faults.example';
  await call({ method: 'POST', path: '/domains', body: { name: domain } });
  const record = ((await call({ method: 'POST', path: `/domains/${domain}/records`, body: { type: 'A', name: 'api', data: '192.0.2.1' } })).body as { domain_record: { id: number } }).domain_record.id;
  const certificate = ((await call({ method: 'POST', path: '/certificates', body: { name: 'faults', type: 'lets_encrypt', dns_names: [domain] } })).body as { certificate: { id: string } }).certificate.id;
  const machineCalls = machines.calls.length;

  for (const request of operations({ droplet, action: actionId, key, lb, certificate, domain, record })) {
    await conforms({ ...request, token: 'wrong' }, 401);
    await conforms({ ...request, token: null }, 401);
    for (const status of [429, 500, 503] as const) {
      standin.faults.add({ status, count: 1 });
      await conforms(request, status);
    }
  }
  assert.equal(machines.calls.length, machineCalls, 'no faulted or refused request reached the machines');
});

test('contract: 404 and 422 answers match the spec', async () => {
  const missing = 999_999_999;
  for (const request of [
    { method: 'GET', path: `/droplets/${missing}` },
    { method: 'DELETE', path: `/droplets/${missing}` },
    { method: 'DELETE', path: '/droplets?tag_name=never-seen' },
    { method: 'POST', path: '/tags/never-seen/resources', body: { resources: [{ resource_id: '1', resource_type: 'droplet' }] } },
    { method: 'POST', path: `/droplets/${missing}/actions`, body: { type: 'reboot' } },
    { method: 'GET', path: `/droplets/${missing}/actions` },
    { method: 'GET', path: `/droplets/${missing}/actions/1` },
    { method: 'GET', path: `/actions/${missing}` },
    { method: 'GET', path: '/account/keys/00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff' },
    { method: 'DELETE', path: `/account/keys/${missing}` },
    { method: 'PUT', path: `/account/keys/${missing}`, body: { name: 'x' } },
    { method: 'GET', path: '/load_balancers/4de7ac8b-495b-4884-9a69-1050c6793cd6' },
    { method: 'PUT', path: '/load_balancers/4de7ac8b-495b-4884-9a69-1050c6793cd6', body: lbRequest },
    { method: 'DELETE', path: '/load_balancers/4de7ac8b-495b-4884-9a69-1050c6793cd6' },
    { method: 'POST', path: '/load_balancers/4de7ac8b-495b-4884-9a69-1050c6793cd6/droplets', body: { droplet_ids: [1] } },
    { method: 'POST', path: '/load_balancers/4de7ac8b-495b-4884-9a69-1050c6793cd6/forwarding_rules', body: { forwarding_rules: [] } },
    { method: 'GET', path: '/certificates/4de7ac8b-495b-4884-9a69-1050c6793cd6' },
    { method: 'DELETE', path: '/certificates/4de7ac8b-495b-4884-9a69-1050c6793cd6' },
    { method: 'GET', path: '/domains/never.example' },
    { method: 'DELETE', path: '/domains/never.example' },
    { method: 'GET', path: '/domains/never.example/records' },
    { method: 'POST', path: '/domains/never.example/records', body: { type: 'A', name: 'www', data: '192.0.2.1' } },
    { method: 'DELETE', path: '/domains/never.example/records/1' },
  ]) {
    await conforms(request, 404);
  }

  const droplet = await create('/droplets', { ...dropletRequest, name: 'v' }, 'droplet');
  machines.boot(droplet);
  for (const request of [
    { method: 'POST', path: '/droplets', body: { ...dropletRequest, name: 'v', size: 'm-64vcpu-512gb' } },
    { method: 'POST', path: '/droplets', body: { ...dropletRequest, name: 'v', user_data: 'x'.repeat(65_537) } },
    { method: 'POST', path: '/droplets', body: { ...dropletRequest, name: 'not a hostname' } },
    { method: 'POST', path: `/droplets/${droplet}/actions`, body: { type: 'rebuild' } },
    { method: 'POST', path: '/account/keys', body: { name: 'k', public_key: 'ssh-rsa nonsense' } },
    { method: 'POST', path: '/load_balancers', body: { ...lbRequest, forwarding_rules: [] } },
    { method: 'POST', path: '/load_balancers', body: { ...lbRequest, health_check: { unhealthy_threshold: 1 } } },
    { method: 'POST', path: '/load_balancers', body: { ...lbRequest, tag: 'not a tag' } },
    { method: 'POST', path: '/load_balancers', body: { ...lbRequest, droplet_ids: [droplet] } },
    { method: 'POST', path: '/load_balancers', body: { ...lbRequest, forwarding_rules: [{ entry_protocol: 'https', entry_port: 443, target_protocol: 'http', target_port: 80, certificate_id: '4de7ac8b-495b-4884-9a69-1050c6793cd6' }] } },
    { method: 'POST', path: '/load_balancers', body: { ...lbRequest, redirect_http_to_https: true } },
    { method: 'POST', path: '/certificates', body: { name: 'elsewhere', type: 'lets_encrypt', dns_names: ['api.not-on-do.example'] } },
    { method: 'POST', path: '/certificates', body: { name: 'bad', type: 'custom', private_key: 'x', leaf_certificate: 'y' } },
    { method: 'POST', path: '/domains', body: { name: 'not a domain' } },
  ]) {
    await conforms(request, 422);
  }
});

test('contract: every implemented operation was checked for success, 401 and 429', () => {
  const expected: Record<string, string> = {
    'GET /v2/account': '200',
    'GET /v2/account/keys': '200',
    'POST /v2/account/keys': '201',
    'GET /v2/account/keys/{ssh_key_identifier}': '200',
    'PUT /v2/account/keys/{ssh_key_identifier}': '200',
    'DELETE /v2/account/keys/{ssh_key_identifier}': '204',
    'GET /v2/droplets': '200',
    'POST /v2/droplets': '202',
    'DELETE /v2/droplets': '204',
    'GET /v2/droplets/{droplet_id}': '200',
    'DELETE /v2/droplets/{droplet_id}': '204',
    'GET /v2/droplets/{droplet_id}/actions': '200',
    'POST /v2/droplets/{droplet_id}/actions': '201',
    'GET /v2/droplets/{droplet_id}/actions/{action_id}': '200',
    'POST /v2/tags': '201',
    'POST /v2/tags/{tag_id}/resources': '204',
    'GET /v2/actions': '200',
    'GET /v2/actions/{action_id}': '200',
    'GET /v2/regions': '200',
    'GET /v2/sizes': '200',
    'GET /v2/images': '200',
    'GET /v2/load_balancers': '200',
    'POST /v2/load_balancers': '202',
    'GET /v2/load_balancers/{lb_id}': '200',
    'PUT /v2/load_balancers/{lb_id}': '200',
    'DELETE /v2/load_balancers/{lb_id}': '204',
    'POST /v2/load_balancers/{lb_id}/droplets': '204',
    'DELETE /v2/load_balancers/{lb_id}/droplets': '204',
    'POST /v2/load_balancers/{lb_id}/forwarding_rules': '204',
    'DELETE /v2/load_balancers/{lb_id}/forwarding_rules': '204',
    'GET /v2/monitoring/metrics/load_balancer/droplets_health_checks': '200',
    'GET /v2/certificates': '200',
    'POST /v2/certificates': '201',
    'GET /v2/certificates/{certificate_id}': '200',
    'DELETE /v2/certificates/{certificate_id}': '204',
    'GET /v2/domains': '200',
    'POST /v2/domains': '201',
    'GET /v2/domains/{domain_name}': '200',
    'DELETE /v2/domains/{domain_name}': '204',
    'GET /v2/domains/{domain_name}/records': '200',
    'POST /v2/domains/{domain_name}/records': '201',
    'DELETE /v2/domains/{domain_name}/records/{domain_record_id}': '204',
  };
  for (const [operation, success] of Object.entries(expected)) {
    const statuses = [...(checked.get(operation) ?? [])].sort();
    for (const status of [success, '401', '429', '500']) {
      assert.ok(statuses.includes(status), `${operation}: ${status} never checked (checked: ${statuses.join(', ')})`);
    }
  }
  assert.deepEqual([...checked.keys()].filter((op) => !(op in expected)), [], 'operations checked but not listed');
});

test('contract self-check: the validator reports a droplet without a required field, a wrong type, and a missing header', async () => {
  const droplet = await create('/droplets', { ...dropletRequest, name: 'self' }, 'droplet');
  const answer = await call({ method: 'GET', path: `/droplets/${droplet}` });
  assert.deepEqual(contract.check(answer).problems, []);

  const body = structuredClone(answer.body) as { droplet: Record<string, unknown> };
  delete body.droplet.networks;
  body.droplet.status = 'running';
  const headers = new Headers(answer.headers);
  headers.delete('ratelimit-remaining');
  const verdict = contract.check({ ...answer, body, headers });
  const report = verdict.problems.join('\n');
  assert.match(report, /GET \/v2\/droplets\/\d+ -> 200 \(GET \/v2\/droplets\/\{droplet_id\}, response 200\)/);
  assert.match(report, /data\/droplet must have required property 'networks'/);
  assert.match(report, /data\/droplet\/status must be equal to one of the allowed values/);
  assert.match(report, /header ratelimit-remaining missing/);

  const nullable = structuredClone(answer.body) as { droplet: Record<string, unknown> };
  nullable.droplet.kernel = null;
  nullable.droplet.next_backup_window = null;
  assert.deepEqual(contract.check({ ...answer, body: nullable }).problems, [], 'nullable: true admits null');
  nullable.droplet.created_at = 'yesterday';
  assert.match(contract.check({ ...answer, body: nullable }).problems.join('\n'), /must match format "date-time"/);

  const undocumented = contract.check({ ...answer, method: 'PATCH' });
  assert.match(undocumented.problems.join('\n'), /no operation in the spec/);
});
