import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createApiClient } from 'dots-wrapper';
import { startDoStandin, type DoStandinOptions, type FaultSpec } from '../lab/do-standin/index.js';
import { ScriptedMachines } from './do-test-machines.js';

// axios honours proxy variables; the stand-in is always local.
process.env.NO_PROXY = '127.0.0.1,localhost';

const TOKEN = 'lab-token';
type Client = ReturnType<typeof createApiClient>;

async function lab(t: TestContext, opts: Partial<DoStandinOptions> = {}) {
  const machines = new ScriptedMachines();
  const standin = await startDoStandin({ tokens: [TOKEN], machines, ...opts });
  t.after(() => standin.close());
  const client = createApiClient({ token: TOKEN, endpoint: standin.endpoint });
  const addFault = async (spec: FaultSpec) => {
    const res = await fetch(`${standin.url}/lab/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(spec),
    });
    assert.equal(res.status, 201, await res.text());
  };
  return { standin, machines, client, addFault };
}

interface HttpFailure {
  status: number;
  data: unknown;
  headers: Record<string, unknown>;
}

/** dots-wrapper lets axios reject on any non-2xx answer; this is what a caller gets to look at. */
async function failure(request: Promise<unknown>): Promise<HttpFailure> {
  const err: unknown = await request.then(
    () => assert.fail('expected the request to fail'),
    (e: unknown) => e,
  );
  const isAxiosError = typeof err === 'object' && err !== null && 'isAxiosError' in err && err.isAxiosError === true;
  assert.ok(isAxiosError, `not an axios error: ${String(err)}`);
  assert.ok('response' in err && typeof err.response === 'object' && err.response !== null, 'axios error without a response');
  const { status, data, headers } = err.response as HttpFailure;
  return { status, data, headers };
}

function assertErrorBody(data: unknown, id: string, message?: string): void {
  assert.ok(typeof data === 'object' && data !== null, 'error body is not an object');
  const body = data as Record<string, unknown>;
  assert.equal(body.id, id);
  if (message !== undefined) assert.equal(body.message, message);
  assert.equal(typeof body.message, 'string');
  assert.match(String(body.request_id), /^[0-9a-f-]{36}$/);
}

/** An OpenSSH ed25519 public key line with random key bytes (the stand-in checks form, not curve). */
function ed25519Key(comment: string): string {
  const withLength = (b: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(b.length);
    return Buffer.concat([length, b]);
  };
  const blob = Buffer.concat([withLength(Buffer.from('ssh-ed25519')), withLength(randomBytes(32))]);
  return `ssh-ed25519 ${blob.toString('base64')} ${comment}`;
}

/** Vectors from `ssh-keygen -l -E md5`. */
const knownKeys = [
  {
    line: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEtyuG2RYz076Fwx82E3zwNmi4ES9vLvUtNCQ34BrfLm lab@plumb',
    md5: 'f5:d9:d1:57:b9:46:6a:b3:f7:11:2c:5f:2f:31:a2:ff',
  },
  {
    line: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC/AT3ntmjv86xvVwTkf+PdPxgICAOmTx8B+/u0b/KBMyTbyxQ6XjHM0yH6POnzyKbvPBPXaHn3S2hpsdQqiJW+bqGTPo/vCwf4YjSJ/CNR9JembFX6BGwq+k/HFzCDwINkN/AMFe7iHNdcIOJhMe60eOasbKwPNJ97kByPMMkS7Q== rsa@plumb',
    md5: 'c6:85:19:86:f5:3a:cb:70:3e:f8:46:a9:4e:f6:89:cf',
  },
];

const dropletRequest = { size: 's-1vcpu-1gb', image: 'debian-13-x64', region: 'fra1' };

async function createDroplet(client: Client, name: string, tags: string[] = []) {
  const res = await client.droplet.createDroplet({ ...dropletRequest, name, tags });
  return res.data.droplet;
}

function createActionId(data: unknown): number {
  const links = (data as { links?: { actions?: { id?: unknown; rel?: unknown }[] } }).links;
  const create = links?.actions?.find((a) => a.rel === 'create');
  assert.equal(typeof create?.id, 'number', 'create response lists no create action');
  return create?.id as number;
}

/** Follows links.pages.next the way a client does, returning every page's items. */
interface Listed<T> {
  items: T[];
  next?: string | undefined;
}
async function allPages<T>(first: Listed<T>, fetchPage: (page: number) => Promise<Listed<T>>): Promise<T[][]> {
  const pages = [first.items];
  let next = first.next;
  while (next !== undefined) {
    const page = Number(new URL(next).searchParams.get('page'));
    const res = await fetchPage(page);
    pages.push(res.items);
    next = res.next;
  }
  return pages;
}

test('auth: a wrong or missing token is a 401 with DigitalOcean body, surfaced by dots-wrapper as an axios error', async (t) => {
  const { standin } = await lab(t);
  const stranger = createApiClient({ token: 'not-a-token', endpoint: standin.endpoint });
  const err = await failure(stranger.account.getAccount());
  assert.equal(err.status, 401);
  assertErrorBody(err.data, 'Unauthorized', 'Unable to authenticate you');
  assert.equal(err.headers['ratelimit-limit'], '5000');

  const anonymous = await fetch(`${standin.endpoint}/droplets`);
  assert.equal(anonymous.status, 401);
  assertErrorBody(await anonymous.json(), 'Unauthorized');
});

test('account: one account object', async (t) => {
  const { client } = await lab(t, { dropletLimit: 7 });
  const { data, status } = await client.account.getAccount();
  assert.equal(status, 200);
  assert.equal(data.account.droplet_limit, 7);
  assert.equal(data.account.status, 'active');
});

test('ssh keys: create computes the MD5 fingerprint; get and delete work by id and by fingerprint', async (t) => {
  const { client } = await lab(t);
  const created = [];
  for (const [i, key] of knownKeys.entries()) {
    const res = await client.sshKey.createSshKey({ name: `key-${i}`, public_key: key.line });
    assert.equal(res.status, 201);
    assert.equal(res.data.ssh_key.fingerprint, key.md5);
    assert.equal(res.data.ssh_key.public_key, key.line);
    created.push(res.data.ssh_key);
  }
  const [ed, rsa] = created;
  assert.ok(ed !== undefined && rsa !== undefined);
  assert.equal((await client.sshKey.getSshKey({ ssh_key_id: String(ed.id) })).data.ssh_key.name, 'key-0');
  assert.equal((await client.sshKey.getSshKey({ ssh_key_id: rsa.fingerprint })).data.ssh_key.id, rsa.id);

  assert.equal((await client.sshKey.destroySshKey({ ssh_key_id: rsa.fingerprint })).status, 204);
  assert.equal((await client.sshKey.destroySshKey({ ssh_key_id: String(ed.id) })).status, 204);
  const gone = await failure(client.sshKey.getSshKey({ ssh_key_id: String(ed.id) }));
  assert.equal(gone.status, 404);
  assertErrorBody(gone.data, 'not_found', 'The resource you were accessing could not be found.');
});

test('ssh keys: what is not an OpenSSH public key, and a key already on the account, are 422', async (t) => {
  const { client } = await lab(t);
  const [ed] = knownKeys;
  assert.ok(ed !== undefined);
  const notKeys = [
    'hello',
    'ssh-ed25519 not*base64',
    ed.line.replace('ssh-ed25519', 'ssh-rsa'),
    '-----BEGIN OPENSSH PRIVATE KEY-----',
  ];
  for (const publicKey of notKeys) {
    const err = await failure(client.sshKey.createSshKey({ name: 'bad', public_key: publicKey }));
    assert.equal(err.status, 422, publicKey);
    assertErrorBody(err.data, 'unprocessable_entity');
  }
  await client.sshKey.createSshKey({ name: 'first', public_key: ed.line });
  const dup = await failure(client.sshKey.createSshKey({ name: 'again', public_key: ed.line }));
  assert.equal(dup.status, 422);
  assertErrorBody(dup.data, 'unprocessable_entity', 'SSH Key is already in use on your account');
});

test('pagination: five keys at per_page=2 are three pages, reached through links.pages.next', async (t) => {
  const { client, standin } = await lab(t);
  for (let i = 0; i < 5; i++) await client.sshKey.createSshKey({ name: `k${i}`, public_key: ed25519Key(`k${i}`) });

  const keysPage = async (page: number) => {
    const { data } = await client.sshKey.listSshKeys({ page, per_page: 2 });
    assert.equal(data.meta?.total, 5);
    return { items: data.ssh_keys.map((k) => k.name), next: data.links?.pages?.next, pages: data.links?.pages };
  };
  const first = await keysPage(1);
  assert.deepEqual(first.pages, {
    next: `${standin.endpoint}/account/keys?page=2&per_page=2`,
    last: `${standin.endpoint}/account/keys?page=3&per_page=2`,
  });
  const middle = await keysPage(2);
  assert.deepEqual(Object.keys(middle.pages ?? {}).sort(), ['first', 'last', 'next', 'prev']);
  const last = await keysPage(3);
  assert.deepEqual(Object.keys(last.pages ?? {}).sort(), ['first', 'prev']);

  assert.deepEqual(await allPages(first, keysPage), [['k0', 'k1'], ['k2', 'k3'], ['k4']]);

  const defaults = await client.sshKey.listSshKeys({ per_page: 1000 });
  assert.equal(defaults.data.ssh_keys.length, 5);
  assert.deepEqual(defaults.data.links, {}, 'one page: no page links');
});

test('droplets: list pages through links.pages.next, and tag_name filters', async (t) => {
  const { client } = await lab(t);
  const names = ['a-1', 'a-2', 'b-1', 'a-3', 'b-2'];
  for (const name of names) await createDroplet(client, name, [name.startsWith('a') ? 'plumb:a' : 'plumb:b']);

  const dropletsPage = (tag?: string) => async (page: number) => {
    const { data } = await client.droplet.listDroplets({ page, per_page: 2, ...(tag === undefined ? {} : { tag_name: tag }) });
    return { items: data.droplets.map((d) => d.name), next: data.links?.pages?.next, total: data.meta?.total };
  };
  const first = await dropletsPage()(1);
  assert.equal(first.total, 5);
  assert.deepEqual(await allPages(first, dropletsPage()), [['a-1', 'a-2'], ['b-1', 'a-3'], ['b-2']]);

  const tagged = await dropletsPage('plumb:a')(1);
  assert.equal(tagged.total, 3);
  assert.match(tagged.next ?? '', /tag_name=plumb%3Aa/, 'page links keep the filter');
  assert.deepEqual(await allPages(tagged, dropletsPage('plumb:a')), [['a-1', 'a-2'], ['a-3']]);
  assert.deepEqual((await dropletsPage('nobody')(1)).items, []);
});

test('droplets: create answers 202 with status new, and the droplet is active once its machine has booted', async (t) => {
  const { client, machines } = await lab(t);
  const res = await client.droplet.createDroplet({ ...dropletRequest, size: 's-2vcpu-4gb', name: 'api-1', user_data: '#cloud-config\n' });
  assert.equal(res.status, 202);
  const droplet = res.data.droplet;
  assert.equal(droplet.status, 'new');
  assert.deepEqual(droplet.networks, { v4: [], v6: [] });
  assert.ok(Number.isSafeInteger(droplet.id) && droplet.id > 100_000_000, `droplet id ${droplet.id}`);
  assert.deepEqual(machines.specs.get(droplet.id), {
    id: droplet.id,
    name: 'api-1',
    vcpus: 2,
    memoryMiB: 4096,
    diskGiB: 80,
    userData: '#cloud-config\n',
    publicKeys: [],
  });

  const createAction = createActionId(res.data);
  assert.equal((await client.action.getAction({ action_id: createAction })).data.action.status, 'in-progress');
  assert.equal((await client.droplet.getDroplet({ droplet_id: droplet.id })).data.droplet.status, 'new');

  machines.boot(droplet.id);
  const active = (await client.droplet.getDroplet({ droplet_id: droplet.id })).data.droplet;
  assert.equal(active.status, 'active');
  const address = machines.inspect(droplet.id)?.ipv4;
  assert.deepEqual(active.networks.v4, [
    { ip_address: address?.address, netmask: address?.netmask, gateway: address?.gateway, type: 'public' },
  ]);
  const done = (await client.action.getAction({ action_id: createAction })).data.action;
  assert.equal(done.status, 'completed');
  assert.equal(typeof done.completed_at, 'string');
});

test('droplets: several names make several droplets, answered as droplets with links.actions', async (t) => {
  const { client, machines } = await lab(t);
  const res = await client.droplet.createDroplets({ ...dropletRequest, names: ['w-1', 'w-2', 'w-3'] });
  assert.equal(res.status, 202);
  const data = res.data as unknown as { droplets: { id: number; name: string }[]; links: { actions: unknown[] } };
  assert.deepEqual(data.droplets.map((d) => d.name), ['w-1', 'w-2', 'w-3']);
  assert.equal(data.links.actions.length, 3);
  assert.equal(new Set(data.droplets.map((d) => d.id)).size, 3);
  assert.equal(machines.count('create'), 3);
});

test('droplets: an unknown size, region or image, a bad name or tag are 422 and create nothing', async (t) => {
  const { client, machines } = await lab(t);
  const unknownSize = await failure(client.droplet.createDroplet({ ...dropletRequest, name: 'x', size: 's-64vcpu-1tb' }));
  assert.equal(unknownSize.status, 422);
  assertErrorBody(unknownSize.data, 'unprocessable_entity', 'You specified an invalid size for Droplet creation.');

  const bad: Record<string, Parameters<Client['droplet']['createDroplet']>[0]> = {
    region: { ...dropletRequest, name: 'x', region: 'mars1' },
    image: { ...dropletRequest, name: 'x', image: 'windows-11' },
    name: { ...dropletRequest, name: 'under_score' },
    'long name': { ...dropletRequest, name: 'a'.repeat(256) },
    tag: { ...dropletRequest, name: 'x', tags: ['has space'] },
    'ssh key': { ...dropletRequest, name: 'x', ssh_keys: [12345] },
  };
  for (const [what, request] of Object.entries(bad)) {
    const err = await failure(client.droplet.createDroplet(request));
    assert.equal(err.status, 422, what);
    assertErrorBody(err.data, 'unprocessable_entity');
  }
  assert.equal(machines.count('create'), 0);
  assert.equal((await client.droplet.listDroplets({})).data.meta?.total, 0);
});

test('droplets: user_data over 64 KiB is a 422; exactly 64 KiB is accepted', async (t) => {
  const { client, machines } = await lab(t);
  const tooBig = await failure(client.droplet.createDroplet({ ...dropletRequest, name: 'big', user_data: 'x'.repeat(65_537) }));
  assert.equal(tooBig.status, 422);
  assertErrorBody(tooBig.data, 'unprocessable_entity');
  // Bytes, not characters: 21,846 three-byte characters are 65,538 bytes.
  const multibyte = await failure(client.droplet.createDroplet({ ...dropletRequest, name: 'big', user_data: '€'.repeat(21_846) }));
  assert.equal(multibyte.status, 422);
  assert.equal(machines.count('create'), 0);

  const fits = await client.droplet.createDroplet({ ...dropletRequest, name: 'fits', user_data: 'x'.repeat(65_536) });
  assert.equal(fits.status, 202);
});

test('droplets: the account droplet limit is a 422', async (t) => {
  const { client } = await lab(t, { dropletLimit: 2 });
  await client.droplet.createDroplets({ ...dropletRequest, names: ['l-1', 'l-2'] });
  const err = await failure(createDroplet(client, 'l-3'));
  assert.equal(err.status, 422);
  assertErrorBody(err.data, 'unprocessable_entity');
});

test('droplets: a machine that cannot be created is a 500 with DigitalOcean body, and leaves no droplet', async (t) => {
  const { client, machines } = await lab(t);
  machines.failNextCreate = new Error('no free address');
  const err = await failure(createDroplet(client, 'doomed'));
  assert.equal(err.status, 500);
  assertErrorBody(err.data, 'server_error');
  assert.equal((await client.droplet.listDroplets({})).data.meta?.total, 0);

  machines.failNextCreate = new Error('disk full');
  await failure(client.droplet.createDroplets({ ...dropletRequest, names: ['m-1', 'm-2'] }));
  assert.equal(machines.count('destroy'), 1, 'the machine that was created is destroyed again');
  assert.equal((await client.droplet.listDroplets({})).data.meta?.total, 0);
});

test('droplets: DELETE answers 204 only after the machine is destroyed', async (t) => {
  const { client, machines } = await lab(t);
  const droplet = await createDroplet(client, 'short-lived');
  machines.holdOperations = true;
  let answered = false;
  const deletion = client.droplet.deleteDroplet({ droplet_id: droplet.id }).then((res) => {
    answered = true;
    return res;
  });
  while (machines.heldOps(droplet.id).length === 0) await sleep(5);
  await sleep(20);
  assert.equal(answered, false, 'answered before destroy resolved');
  machines.settle(droplet.id);
  const res = await deletion;
  assert.equal(res.status, 204);
  assert.equal(machines.count('destroy'), 1);
  assert.equal((await failure(client.droplet.getDroplet({ droplet_id: droplet.id }))).status, 404);
});

test('droplets: delete by tag destroys only the tagged droplets; an unknown tag is a 404', async (t) => {
  const { client, machines } = await lab(t);
  const keep = await createDroplet(client, 'keep', ['prod']);
  const gone = [await createDroplet(client, 'g-1', ['ci']), await createDroplet(client, 'g-2', ['ci', 'prod'])];

  const res = await client.droplet.deleteDropletsByTag({ tag_name: 'ci' });
  assert.equal(res.status, 204);
  assert.deepEqual(
    machines.calls.filter((c) => c.op === 'destroy').map((c) => c.id).sort(),
    gone.map((d) => d.id).sort(),
  );
  const left = (await client.droplet.listDroplets({})).data.droplets.map((d) => d.id);
  assert.deepEqual(left, [keep.id]);

  const unknown = await failure(client.droplet.deleteDropletsByTag({ tag_name: 'never-used' }));
  assert.equal(unknown.status, 404);
  assertErrorBody(unknown.data, 'not_found');
});

test('actions: reboot goes from in-progress to completed, a failing power_off is errored, an unknown type is 422', async (t) => {
  const { client, machines } = await lab(t);
  const droplet = await createDroplet(client, 'acted-on');
  machines.boot(droplet.id);
  machines.holdOperations = true;

  const started = await client.droplet.rebootDroplet({ droplet_id: droplet.id });
  assert.equal(started.status, 201);
  const action = started.data.action;
  assert.equal(action.status, 'in-progress');
  assert.equal(action.type, 'reboot');
  assert.equal(action.resource_id, droplet.id);
  assert.equal(action.resource_type, 'droplet');
  assert.equal(action.region_slug, 'fra1');
  assert.equal(action.completed_at, null);
  assert.deepEqual(machines.heldOps(droplet.id), ['reboot']);

  const busy = await failure(client.droplet.powerOffDroplet({ droplet_id: droplet.id }));
  assert.equal(busy.status, 422, 'a droplet with a pending action takes no other');

  machines.settle(droplet.id);
  await sleep(5);
  const viaAction = (await client.action.getAction({ action_id: action.id })).data.action;
  const viaDroplet = (await client.droplet.getDropletAction({ droplet_id: droplet.id, action_id: action.id })).data.action;
  assert.equal(viaAction.status, 'completed');
  assert.deepEqual(viaDroplet, viaAction);

  const off = (await client.droplet.powerOffDroplet({ droplet_id: droplet.id })).data.action;
  machines.settle(droplet.id, new Error('machine would not stop'));
  await sleep(5);
  assert.equal((await client.action.getAction({ action_id: off.id })).data.action.status, 'errored');

  const unknown = await failure(client.droplet.powerCycleDroplet({ droplet_id: droplet.id }));
  assert.equal(unknown.status, 422);
  assertErrorBody(unknown.data, 'unprocessable_entity');
  assert.equal((await failure(client.droplet.rebootDroplet({ droplet_id: 1 }))).status, 404);
});

test('actions: power_off turns an active droplet off, power_on makes it active again', async (t) => {
  const { client, machines } = await lab(t);
  const droplet = await createDroplet(client, 'cycled');
  machines.boot(droplet.id);
  await client.droplet.powerOffDroplet({ droplet_id: droplet.id });
  assert.equal((await client.droplet.getDroplet({ droplet_id: droplet.id })).data.droplet.status, 'off');
  await client.droplet.powerOnDroplet({ droplet_id: droplet.id });
  assert.equal((await client.droplet.getDroplet({ droplet_id: droplet.id })).data.droplet.status, 'active');
  const listed = (await client.droplet.listDropletActions({ droplet_id: droplet.id })).data.actions.map((a) => a.type);
  assert.deepEqual(listed, ['create', 'power_off', 'power_on']);
});

test('faults: an injected 429 carries Retry-After and ratelimit-remaining 0, and the next request succeeds', async (t) => {
  const { client, addFault } = await lab(t);
  await addFault({ status: 429, count: 1, retryAfter: 7 });
  const err = await failure(client.account.getAccount());
  assert.equal(err.status, 429);
  assertErrorBody(err.data, 'too_many_requests', 'API Rate limit exceeded.');
  assert.equal(err.headers['retry-after'], '7');
  assert.equal(err.headers['ratelimit-remaining'], '0');
  const reset = Number(err.headers['ratelimit-reset']);
  assert.ok(Math.abs(reset - (Date.now() / 1000 + 7)) < 3, `ratelimit-reset ${reset}`);

  assert.equal((await client.account.getAccount()).status, 200);
});

test('faults: 500 and 503 are served in order, count by count; a fault before create creates nothing', async (t) => {
  const { client, addFault, standin, machines } = await lab(t);
  await addFault({ status: 500, count: 2 });
  await addFault({ status: 503, count: 1 });
  assert.deepEqual((await (await fetch(`${standin.url}/lab/faults`)).json()) as unknown, {
    faults: [
      { status: 500, count: 2, remaining: 2 },
      { status: 503, count: 1, remaining: 1 },
    ],
  });
  const first = await failure(createDroplet(client, 'x'));
  assert.equal(first.status, 500);
  assertErrorBody(first.data, 'server_error');
  assert.equal((await failure(client.region.listRegions({}))).status, 500);
  const third = await failure(client.size.listSizes({}));
  assert.equal(third.status, 503);
  assertErrorBody(third.data, 'service_unavailable');
  assert.equal((await client.size.listSizes({})).status, 200);
  assert.equal(machines.count('create'), 0);
});

test('faults: a fault aimed at a method and path waits for that request; others pass untouched', async (t) => {
  const { client, addFault, machines } = await lab(t);
  await addFault({ status: 503, count: 1, method: 'POST', path: '/v2/droplets' });
  assert.equal((await client.droplet.listDroplets({})).status, 200, 'a list of the same path is not the create');
  assert.equal((await client.region.listRegions({})).status, 200);
  assert.equal((await failure(createDroplet(client, 'x'))).status, 503);
  assert.equal(machines.count('create'), 0);
  assert.equal((await createDroplet(client, 'x')).status, 'new');
  assert.equal(machines.count('create'), 1);
});

test('faults: delayMs slows requests down without failing them; DELETE /lab/faults clears what is pending', async (t) => {
  const { client, addFault, standin } = await lab(t);
  await addFault({ delayMs: 2_000, count: 1, method: 'GET', path: '/v2/account' });
  // The delayed request is sent first and answered last: another one meanwhile is not held up.
  const finished: string[] = [];
  const delayed = client.account.getAccount().then((r) => finished.push(`delayed ${r.status}`));
  await client.region.listRegions({}).then((r) => finished.push(`next ${r.status}`));
  await delayed;
  assert.deepEqual(finished, ['next 200', 'delayed 200']);

  await addFault({ status: 503, count: 5 });
  assert.equal((await fetch(`${standin.url}/lab/faults`, { method: 'DELETE' })).status, 204);
  assert.equal((await client.account.getAccount()).status, 200);

  const bad = await fetch(`${standin.url}/lab/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ status: 418, count: 1 }),
  });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: string }).error, /status must be one of 429, 500, 503/);
});

test('rate limit: ratelimit-remaining counts down per token; a spent quota is a 429', async (t) => {
  const { standin } = await lab(t, { tokens: [TOKEN, 'other'], rateLimitPerHour: 3 });
  const remaining = async (token: string) => {
    const res = await fetch(`${standin.endpoint}/account`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.headers.get('ratelimit-limit'), '3');
    assert.ok(Number(res.headers.get('ratelimit-reset')) > Date.now() / 1000);
    return { status: res.status, remaining: res.headers.get('ratelimit-remaining'), retryAfter: res.headers.get('retry-after') };
  };
  assert.deepEqual(await remaining(TOKEN), { status: 200, remaining: '2', retryAfter: null });
  assert.deepEqual(await remaining(TOKEN), { status: 200, remaining: '1', retryAfter: null });
  assert.deepEqual(await remaining('other'), { status: 200, remaining: '2', retryAfter: null });
  assert.deepEqual(await remaining(TOKEN), { status: 200, remaining: '0', retryAfter: null });
  const spent = await remaining(TOKEN);
  assert.equal(spent.status, 429);
  assert.equal(spent.remaining, '0');
  assert.ok(Number(spent.retryAfter) > 0);
});

test('lab: /lab/requests counts what reached /v2 by method and path, faulted and refused requests included', async (t) => {
  const { client, addFault, standin } = await lab(t);
  await addFault({ status: 429, count: 1 });
  await failure(createDroplet(client, 'retried'));
  const droplet = await createDroplet(client, 'retried');
  await client.droplet.getDroplet({ droplet_id: droplet.id });
  await fetch(`${standin.endpoint}/account`);

  const res = await fetch(`${standin.url}/lab/requests`);
  const log = (await res.json()) as { total: number; counts: Record<string, number>; recent: { status: number }[] };
  assert.deepEqual(log.counts, {
    'POST /v2/droplets': 2,
    [`GET /v2/droplets/${droplet.id}`]: 1,
    'GET /v2/account': 1,
  });
  assert.equal(log.total, 4);
  assert.deepEqual(log.recent.map((r) => r.status), [429, 202, 200, 401]);
  assert.equal(standin.requests.count('POST', '/v2/droplets'), 2);
});

test('routes: unknown ids and paths under /v2 are 404 with DigitalOcean body; off /v2 the stand-in says where the API is', async (t) => {
  const { client, standin } = await lab(t);
  for (const request of [
    client.droplet.getDroplet({ droplet_id: 123 }),
    client.droplet.deleteDroplet({ droplet_id: 123 }),
    client.action.getAction({ action_id: 42 }),
    client.sshKey.getSshKey({ ssh_key_id: 'aa:bb' }),
    client.volume.listVolumes({}),
  ]) {
    const err = await failure(request);
    assert.equal(err.status, 404);
    assertErrorBody(err.data, 'not_found', 'The resource you were accessing could not be found.');
  }
  const wrongBase = createApiClient({ token: TOKEN, endpoint: standin.url });
  const err = await failure(wrongBase.account.getAccount());
  assert.equal(err.status, 404);
  assert.match(String((err.data as { message: string }).message), /under \/v2/);
});
