import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { DigitalOceanError, ValidationError } from '@plumb/shared';
import { DigitalOcean, fromEnv, type CreateDropletRequest, type DigitalOceanOptions } from '@plumb/controller/digitalocean/client';
import { rateLimitWaitMs } from '@plumb/controller/digitalocean/retry';
import { startDoStandin, type FaultSpec, type StartedDoStandin } from '../lab/do-standin/index.js';
import { ScriptedMachines } from './do-test-machines.js';

// axios honours proxy variables; the stand-in is always local.
process.env.NO_PROXY = '127.0.0.1,localhost';

const TOKEN = 'lab-token';
const TAG = 'plumb';

const dropletRequest = (name: string, over: Partial<CreateDropletRequest> = {}): CreateDropletRequest => ({
  name,
  region: 'nyc3',
  size: 's-1vcpu-1gb',
  image: 'debian-13-x64',
  tags: [TAG],
  userData: '#cloud-config\n',
  ...over,
});

/** A client whose waits are recorded, not waited. */
function clientFor(endpoint: string, opts: Partial<DigitalOceanOptions> = {}) {
  const sleeps: number[] = [];
  const record = async (ms: number) => {
    sleeps.push(ms);
  };
  const client = new DigitalOcean({ token: TOKEN, apiUrl: endpoint, ...opts, clock: { sleep: record, ...opts.clock } });
  return { client, sleeps };
}

async function lab(t: TestContext, opts: Partial<DigitalOceanOptions> = {}) {
  const machines = new ScriptedMachines();
  const standin = await startDoStandin({ tokens: [TOKEN], machines });
  t.after(() => standin.close());
  const fault = (spec: FaultSpec) => standin.faults.add(spec);
  const count = (method: string, path: string) => standin.requests.count(method, path);
  return { standin, machines, fault, count, ...clientFor(standin.endpoint, opts) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail('expected a failure'),
    (err: unknown) => err,
  );
}

async function doError(promise: Promise<unknown>): Promise<DigitalOceanError> {
  const err = await rejection(promise);
  assert.ok(err instanceof DigitalOceanError, `not a DigitalOceanError: ${String(err)}`);
  return err;
}

/**
 * Forwards to the stand-in, and can lose the answer to the next POST after the stand-in has acted
 * on it: the gateway failure no stand-in fault can show, since a fault stops the request first.
 */
async function lossyGateway(t: TestContext, standin: StartedDoStandin) {
  const target = new URL(standin.url);
  let loseNextPost: 'answer-503' | 'reset' | undefined;
  const server = createServer((req, res) => {
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        const lose = req.method === 'POST' ? loseNextPost : undefined;
        if (lose === undefined) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        loseNextPost = undefined;
        answer.resume().on('end', () => {
          if (lose === 'reset') return res.socket?.destroy();
          res.writeHead(503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'service_unavailable', message: 'upstream answer lost', request_id: 'gateway' }));
        });
      },
    );
    req.pipe(upstream);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}/v2`,
    loseNextPostAnswer: (how: 'answer-503' | 'reset') => {
      loseNextPost = how;
    },
  };
}

test('create: two 429s then a 503 still make exactly one droplet', async (t) => {
  const { client, sleeps, fault, count } = await lab(t);
  fault({ status: 429, count: 2, retryAfter: 1 });
  fault({ status: 503, count: 1 });

  const droplet = await client.createDroplet(dropletRequest('api-1'));

  assert.equal(droplet.name, 'api-1');
  assert.equal(droplet.status, 'new');
  // 429, 429, 503, then the one that worked; a 429 is resent as it is, a 503 only after looking.
  assert.equal(count('POST', '/v2/droplets'), 4);
  assert.equal(count('GET', '/v2/droplets'), 1);
  assert.deepEqual(sleeps.slice(0, 2), [1000, 1000]);
  assert.equal(sleeps.length, 3);
  const tagged = await client.listDroplets({ tag: TAG });
  assert.deepEqual(
    tagged.map((d) => d.id),
    [droplet.id],
  );
});

for (const loss of ['answer-503', 'reset'] as const) {
  test(`create: a POST that created the droplet but whose answer was lost (${loss}) returns that droplet, not a second`, async (t) => {
    const { standin, count } = await lab(t);
    const gateway = await lossyGateway(t, standin);
    const { client, sleeps } = clientFor(gateway.endpoint);
    gateway.loseNextPostAnswer(loss);

    const droplet = await client.createDroplet(dropletRequest('api-1'));

    assert.equal(count('POST', '/v2/droplets'), 1, 'the create was not sent again');
    assert.equal(count('GET', '/v2/droplets'), 1, 'it looked for the droplet once');
    assert.equal(sleeps.length, 1);
    assert.deepEqual([...standin.store.droplets.keys()], [droplet.id]);
    assert.equal(droplet.name, 'api-1');
    assert.deepEqual(droplet.tags, [TAG]);
  });
}

test('create: a lost answer with no droplet behind it is sent again', async (t) => {
  const { client, fault, count, standin } = await lab(t);
  fault({ status: 500, count: 1 });

  const droplet = await client.createDroplet(dropletRequest('api-1'));

  assert.equal(count('POST', '/v2/droplets'), 2);
  assert.equal(count('GET', '/v2/droplets'), 1);
  assert.deepEqual([...standin.store.droplets.keys()], [droplet.id]);
});

test('rate limit: Retry-After is waited out exactly', async (t) => {
  const { client, sleeps, fault, count } = await lab(t);
  fault({ status: 429, count: 1, retryAfter: 7 });

  const account = await client.account();

  assert.equal(account.status, 'active');
  assert.deepEqual(sleeps, [7000]);
  assert.equal(count('GET', '/v2/account'), 2);
});

test('rate limit: Retry-After (seconds or a date) comes first, then ratelimit-reset (unix seconds)', () => {
  const now = Date.parse('2026-11-25T12:00:00Z');
  assert.equal(rateLimitWaitMs({ 'retry-after': '3', 'ratelimit-reset': String(now / 1000 + 60) }, now), 3000);
  assert.equal(rateLimitWaitMs({ 'retry-after': 'Wed, 25 Nov 2026 12:00:10 GMT' }, now), 10_000);
  assert.equal(rateLimitWaitMs({ 'ratelimit-reset': String(now / 1000 + 42) }, now), 42_000);
  assert.equal(rateLimitWaitMs({ 'ratelimit-reset': String(now / 1000 - 5) }, now), 0);
  assert.equal(rateLimitWaitMs({}, now), undefined);
});

test('rate limit: a reset further off than the retry budget fails at once, saying when it resets', async (t) => {
  const { client, sleeps, fault, count } = await lab(t);
  fault({ status: 429, count: 1, retryAfter: 600 });

  const err = await doError(client.account());

  assert.equal(err.code, 'DIGITALOCEAN_RATE_LIMITED');
  assert.equal(err.status, 429);
  assert.match(err.message, /rate limit .* used up \(429 Too Many Requests\); it resets in 10 min \(\d\d:\d\d:\d\d UTC\)\.$/);
  assert.match(err.hint ?? '', /250 requests a minute/);
  assert.deepEqual(sleeps, []);
  assert.equal(count('GET', '/v2/account'), 1);
});

test('auth: a refused token is a DigitalOceanError that says what to do, and is not retried', async (t) => {
  const { standin, count } = await lab(t);
  const { client, sleeps } = clientFor(standin.endpoint, { token: 'not-a-token' });

  const err = await doError(client.account());

  assert.equal(err.code, 'DIGITALOCEAN_UNAUTHORIZED');
  assert.equal(err.message, 'DigitalOcean refused the API token (401 Unauthorized).');
  assert.equal(
    err.hint,
    'Check DIGITALOCEAN_ACCESS_TOKEN: create a token with read and write scope at https://cloud.digitalocean.com/account/api/tokens',
  );
  assert.equal(err.status, 401);
  assert.equal(err.id, 'Unauthorized');
  assert.match(err.requestId ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(count('GET', '/v2/account'), 1);
  assert.deepEqual(sleeps, []);
});

test("create: a 422 (unknown size) carries DigitalOcean's message and is not retried", async (t) => {
  const { client, count, sleeps } = await lab(t);

  const err = await doError(client.createDroplet(dropletRequest('api-1', { size: 's-99vcpu-1tb' })));

  assert.equal(err.code, 'DIGITALOCEAN_REJECTED');
  assert.equal(err.message, 'DigitalOcean rejected the request: You specified an invalid size for Droplet creation.');
  assert.equal(err.status, 422);
  assert.equal(err.id, 'unprocessable_entity');
  assert.match(err.requestId ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(count('POST', '/v2/droplets'), 1);
  assert.deepEqual(sleeps, []);
});

test('droplets: a missing droplet is a not-found naming it; deleting one twice is not an error', async (t) => {
  const { client } = await lab(t);
  const err = await doError(client.getDroplet(12345));
  assert.equal(err.code, 'DIGITALOCEAN_NOT_FOUND');
  assert.equal(err.message, 'DigitalOcean has no droplet 12345 (404 Not Found).');

  const droplet = await client.createDroplet(dropletRequest('api-1'));
  assert.equal(await client.deleteDroplet(droplet.id), 'deleted');
  assert.equal(await client.deleteDroplet(droplet.id), 'already-gone');
  assert.deepEqual(await client.listDroplets(), []);
});

test('listDroplets follows links.pages.next through every page, with and without a tag', async (t) => {
  const { client, count } = await lab(t, { pageSize: 2 });
  for (const name of ['a-1', 'a-2', 'a-3']) await client.createDroplet(dropletRequest(name));
  for (const name of ['b-1', 'b-2']) await client.createDroplet(dropletRequest(name, { tags: ['other'] }));

  const tagged = await client.listDroplets({ tag: TAG });
  assert.deepEqual(
    tagged.map((d) => d.name),
    ['a-1', 'a-2', 'a-3'],
  );
  assert.equal(count('GET', '/v2/droplets'), 2);

  const all = await client.listDroplets();
  assert.deepEqual(all.map((d) => d.name).sort(), ['a-1', 'a-2', 'a-3', 'b-1', 'b-2']);
  assert.equal(count('GET', '/v2/droplets'), 2 + 3);
});

test('findSshKey matches a fingerprint, a name or an id, and says when a name is ambiguous', async (t) => {
  const { client, standin } = await lab(t, { pageSize: 1 });
  const keys = [
    { id: 1, name: 'laptop', fingerprint: 'aa:bb', public_key: 'ssh-ed25519 AAAA laptop' },
    { id: 2, name: 'ci', fingerprint: 'cc:dd', public_key: 'ssh-ed25519 BBBB ci' },
    { id: 3, name: 'ci', fingerprint: 'ee:ff', public_key: 'ssh-ed25519 CCCC ci' },
  ];
  for (const key of keys) standin.store.sshKeys.set(key.id, key);

  assert.equal((await client.findSshKey('laptop'))?.id, 1);
  assert.equal((await client.findSshKey('ee:ff'))?.id, 3);
  assert.equal((await client.findSshKey('2'))?.fingerprint, 'cc:dd');
  assert.equal(await client.findSshKey('desktop'), undefined);
  const err = await rejection(client.findSshKey('ci'));
  assert.ok(err instanceof ValidationError);
  assert.match(err.hint ?? '', /cc:dd or ee:ff/);
});

test('waitForActive returns the public address once the droplet has booted', async (t) => {
  const { standin, machines } = await lab(t);
  let dropletId = 0;
  let polls = 0;
  const client = new DigitalOcean({
    token: TOKEN,
    apiUrl: standin.endpoint,
    clock: {
      sleep: async () => {
        polls += 1;
        if (polls === 2) machines.boot(dropletId);
      },
    },
  });
  const created = await client.createDroplet(dropletRequest('api-1'));
  dropletId = created.id;
  const statuses: string[] = [];

  const { droplet, publicIpv4 } = await client.waitForActive(created.id, {
    timeoutMs: 60_000,
    intervalMs: 1_000,
    onStatus: (d) => statuses.push(d.status),
  });

  assert.equal(droplet.status, 'active');
  assert.match(publicIpv4, /^10\.213\.\d+\.2$/);
  assert.equal(droplet.publicIpv4, publicIpv4);
  assert.deepEqual(statuses, ['new', 'active']);
  assert.equal(polls, 2);
});

test('waitForActive gives up at its timeout with a clear error', async (t) => {
  const { standin } = await lab(t);
  let now = 0;
  const client = new DigitalOcean({
    token: TOKEN,
    apiUrl: standin.endpoint,
    clock: {
      now: () => now,
      sleep: async (ms) => {
        now += ms;
      },
    },
  });
  const created = await client.createDroplet(dropletRequest('api-1'));

  const err = await doError(client.waitForActive(created.id, { timeoutMs: 10_000, intervalMs: 3_000 }));

  assert.equal(err.code, 'DIGITALOCEAN_DROPLET_NOT_READY');
  assert.equal(err.message, `Droplet api-1 (${created.id}) is not ready after 10 s: DigitalOcean still reports it new.`);
  assert.match(err.hint ?? '', new RegExp(`cloud.digitalocean.com/droplets/${created.id}`));
  assert.equal(now, 10_000);
  // At 0, 3, 6, 9 and 10 s.
  assert.equal(standin.requests.count('GET', `/v2/droplets/${created.id}`), 5);
});

test('retries are bounded: a DigitalOcean that keeps failing ends in an error after 5 attempts', async (t) => {
  const { client, sleeps, fault, count } = await lab(t);
  fault({ status: 503, count: 100 });

  const err = await doError(client.getDroplet(1));

  assert.equal(err.code, 'DIGITALOCEAN_UNAVAILABLE');
  assert.match(
    err.message,
    /^DigitalOcean is failing \(503 Service Unavailable\) after 5 attempts over \d+ s; try again in a few minutes\.$/,
  );
  assert.equal(err.status, 503);
  assert.equal(count('GET', '/v2/droplets/1'), 5);
  assert.equal(sleeps.length, 4);
  // Exponential with jitter: each wait within [half, all] of 500 ms doubled per retry.
  sleeps.forEach((ms, i) => {
    const ceiling = 500 * 2 ** i;
    assert.ok(ms >= ceiling / 2 && ms <= ceiling, `wait ${i + 1} was ${ms} ms`);
  });
});

test('retries are bounded in time too: no wait starts that would pass the total allowed', async (t) => {
  const { client, sleeps, fault, count } = await lab(t, {
    retry: { maxAttempts: 100, maxTotalWaitMs: 5_000 },
    clock: { random: () => 1 },
  });
  fault({ status: 500, count: 100 });

  const err = await doError(client.listDroplets());

  assert.equal(err.code, 'DIGITALOCEAN_UNAVAILABLE');
  // 0.5 + 1 + 2 s waited; the next 4 s would make 7.5.
  assert.deepEqual(sleeps, [500, 1000, 2000]);
  assert.equal(count('GET', '/v2/droplets'), 4);
  assert.match(err.message, /after 4 attempts over 4 s/);
});

test('fromEnv: the token comes from DIGITALOCEAN_ACCESS_TOKEN, the URL from PLUMB_DIGITALOCEAN_API_URL', () => {
  assert.throws(
    () => fromEnv({ PLUMB_DIGITALOCEAN_API_URL: 'http://127.0.0.1:8080/v2' }),
    (err: unknown) =>
      err instanceof DigitalOceanError && err.code === 'DIGITALOCEAN_NO_TOKEN' && /read and write scope/.test(err.hint ?? ''),
  );
  assert.equal(fromEnv({ DIGITALOCEAN_ACCESS_TOKEN: 't' }).endpoint, 'https://api.digitalocean.com/v2');
  assert.equal(
    fromEnv({ DIGITALOCEAN_ACCESS_TOKEN: 't', PLUMB_DIGITALOCEAN_API_URL: 'http://127.0.0.1:8080/v2/' }).endpoint,
    'http://127.0.0.1:8080/v2',
  );
  assert.throws(
    () => fromEnv({ DIGITALOCEAN_ACCESS_TOKEN: 't', PLUMB_DIGITALOCEAN_API_URL: 'http://127.0.0.1:8080' }),
    (err: unknown) => err instanceof ValidationError && /must be an http\(s\) URL ending in \/v2/.test(err.message),
  );
});
