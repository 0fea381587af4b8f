import assert from 'node:assert/strict';
import type { Resolver } from 'node:dns/promises';
import { describe, test } from 'node:test';
import { PlumbError, ValidationError } from '@plumb/shared';
import type { NginxModel } from '@plumb/agent/render/model';
import { renderNginx } from '@plumb/agent/render/nginx';
import { certbotReason, certonlyArgs } from '@plumb/agent/system/certbot';
import { withCertificate } from '@plumb/agent/ops/https';
import type { AgentState, CertificateRecord } from '@plumb/agent/state';
import { acmeServer, LETS_ENCRYPT, LETS_ENCRYPT_STAGING } from '@plumb/controller/acme/directory';
import { checkHttpsOptions } from '@plumb/controller/commands/https';
import { dnsResolver, domainProblem } from '@plumb/controller/acme/dns-check';

/** The pure parts of `plumb https`: the HTTPS part of nginx's config, certbot's command line and its failures, the state change, the controller's checks. */

const apis: NginxModel['apis'] = [{ name: 'sum', path: '/sum', frontPort: 7001, instances: [{ port: 9000 }] }];
const withHttps: NginxModel = {
  apis,
  forward: 'sum',
  certificates: [
    { name: 'b.example.com', domains: ['b.example.com'] },
    { name: 'api.example.com', domains: ['api.example.com', 'www.example.com'] },
  ],
};

/** Every `server { … }` block of a config, in order. */
const servers = (config: string) => config.split('\nserver {\n').slice(1).map((s) => `server {\n${s.slice(0, s.indexOf('\n}\n') + 3)}`);
/** The part of a server after its own directives: the locations. */
const locationsOf = (server: string) => server.slice(server.indexOf('\n    # API ')).replace(/\n}\n$/, '');

describe('nginx with HTTPS', () => {
  test('each certificate gets a 443 server with the same locations as port 80, the first one the default, its files under /etc/letsencrypt/live/NAME', () => {
    const config = renderNginx(withHttps);
    const [plain, redirectApi, httpsApi, redirectB, httpsB] = servers(config);
    assert.equal(servers(config).length, 5);
    for (const line of ['listen 443 ssl default_server;', 'listen [::]:443 ssl default_server;', 'server_name api.example.com www.example.com;', 'ssl_certificate /etc/letsencrypt/live/api.example.com/fullchain.pem;', 'ssl_certificate_key /etc/letsencrypt/live/api.example.com/privkey.pem;', 'ssl_protocols TLSv1.2 TLSv1.3;', 'http2 on;']) {
      assert.ok(httpsApi?.includes(`\n    ${line}\n`), `${line} in\n${httpsApi}`);
    }
    assert.ok(httpsB?.includes('\n    listen 443 ssl;\n    listen [::]:443 ssl;\n    server_name b.example.com;\n'), httpsB);
    assert.equal(config.match(/default_server/g)?.length, 4, 'port 80 (v4, v6) and 443 (v4, v6) each have one default');
    assert.equal(locationsOf(httpsApi ?? ''), locationsOf(plain ?? ''));
    assert.equal(locationsOf(httpsB ?? ''), locationsOf(plain ?? ''));
    assert.match(locationsOf(httpsApi ?? ''), /location \/ \{\n {8}proxy_pass http:\/\/plumb_sum;/, 'the forward too');
    for (const redirect of [redirectApi, redirectB]) assert.doesNotMatch(redirect ?? '', /443|default_server|proxy_pass/);
  });

  test("HTTP redirects to HTTPS for the certificate's domains only, ACME challenges excepted; by address it still serves", () => {
    const config = renderNginx(withHttps);
    const redirect = servers(config)[1] ?? '';
    assert.equal(
      redirect,
      `server {
    listen 80;
    listen [::]:80;
    server_name api.example.com www.example.com;
    server_tokens off;

    location ^~ /.well-known/acme-challenge/ {
        root /var/lib/plumb/acme;
        default_type text/plain;
    }
    location / {
        return 301 https://$host$request_uri;
    }
}
`,
    );
    const plain = servers(config)[0] ?? '';
    assert.match(plain, /listen 80 default_server;\n {4}listen \[::\]:80 default_server;\n {4}server_name _;/);
    assert.doesNotMatch(plain, /return 301 https/);
  });

  test('without certificates the file is what it was before HTTPS existed', () => {
    assert.equal(renderNginx({ apis, forward: null, certificates: [] }), renderNginx({ apis, forward: null }));
    assert.doesNotMatch(renderNginx({ apis, forward: null }), /443|ssl_/);
  });

  test('the same certificates in another order give the same file', () => {
    assert.equal(renderNginx({ ...withHttps, certificates: [...(withHttps.certificates ?? [])].reverse() }), renderNginx(withHttps));
  });

  test('refuses certificates that would make a broken or hostile file', () => {
    const refused = (certificates: NginxModel['certificates'], pattern: RegExp) =>
      assert.throws(() => renderNginx({ apis, forward: null, certificates }), (err: unknown) => err instanceof PlumbError && err.code === 'RENDER_REFUSED' && pattern.test(err.message));
    refused([{ name: '../etc', domains: ['a.example.com'] }], /certificate name "\.\.\/etc"/);
    refused([{ name: 'a.example.com', domains: ['a.example.com;'] }], /domain of certificate a\.example\.com/);
    refused([{ name: 'a.example.com', domains: ['a.example.com', 'x.example.com\n    return 200'] }], /domain of certificate/);
    refused([{ name: 'a.example.com', domains: [] }], /for no domain/);
    refused([{ name: 'a.example.com', domains: ['a.example.com'] }, { name: 'a.example.com', domains: ['b.example.com'] }], /certificate a\.example\.com twice/);
    refused([{ name: 'a.example.com', domains: ['a.example.com'] }, { name: 'b.example.com', domains: ['b.example.com', 'a.example.com'] }], /a\.example\.com in two certificates/);
  });
});

describe('certbot', () => {
  test('certonly --webroot, non-interactive, every value glued to its option', () => {
    const args = certonlyArgs({ name: 'api.example.com', domains: ['api.example.com', 'www.example.com'], email: '-x@example.com', server: LETS_ENCRYPT, webroot: '/var/lib/plumb/acme', force: false });
    assert.deepEqual(args, [
      'certonly',
      '--webroot',
      '--webroot-path=/var/lib/plumb/acme',
      '--non-interactive',
      '--agree-tos',
      '--email=-x@example.com',
      '--no-eff-email',
      `--server=${LETS_ENCRYPT}`,
      '--cert-name=api.example.com',
      '--domains=api.example.com',
      '--domains=www.example.com',
      '--keep-until-expiring',
    ]);
    assert.ok(!args.includes('--nginx'), "never certbot's nginx plugin: the agent owns nginx's config");
    assert.equal(certonlyArgs({ name: 'a.example.com', domains: ['a.example.com'], email: 'a@example.com', server: LETS_ENCRYPT, webroot: '/w', force: true }).at(-1), '--force-renewal');
  });

  test("a failure is told in certbot's own words: the CA's problem per domain", () => {
    // certbot 4.0 (Debian 13), stdout and stderr together, when pebble's HTTP-01 validation fails.
    const output = `Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for b.lab.test and c.lab.test

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported these problems:
  Domain: b.lab.test
  Type:   connection
  Detail: Get "http://b.lab.test:80/.well-known/acme-challenge/H7Ch": dial tcp 10.213.0.1:80: connect: connection refused

  Domain: c.lab.test
  Type:   unauthorized
  Detail: The key authorization file from the server did not match this challenge

Hint: The Certificate Authority failed to download the temporary challenge files created by Certbot.
Some challenges have failed.
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/log/letsencrypt/letsencrypt.log or re-run Certbot with -v for more details.`;
    assert.equal(
      certbotReason(output),
      'b.lab.test (connection): Get "http://b.lab.test:80/.well-known/acme-challenge/H7Ch": dial tcp 10.213.0.1:80: connect: connection refused; c.lab.test (unauthorized): The key authorization file from the server did not match this challenge',
    );
  });

  test('other failures: the unexpected error, or the last things certbot said, without its boilerplate', () => {
    const unexpected = `Saving debug log to /var/log/letsencrypt/letsencrypt.log
An unexpected error occurred:
ValueError: Requesting 10.213.0.1/dir: Connection refused
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/log/letsencrypt/letsencrypt.log or re-run Certbot with -v for more details.`;
    assert.equal(certbotReason(unexpected), 'ValueError: Requesting 10.213.0.1/dir: Connection refused');
    assert.equal(certbotReason('Saving debug log to /var/log/letsencrypt/letsencrypt.log\nAnother instance of Certbot is already running.\n'), 'Another instance of Certbot is already running.');
    assert.equal(certbotReason(''), 'certbot failed without saying why');
  });
});

describe('the state after a certificate', () => {
  const state = (certificates: CertificateRecord[] | null): AgentState => ({ version: 1, enrolledAt: null, apis: {}, forward: null, https: certificates && { certificates } }) as AgentState;
  const cert = (name: string, ...domains: string[]): CertificateRecord => ({ name, domains: [name, ...domains], email: 'ops@example.com', server: LETS_ENCRYPT, issuedAt: '2026-11-25T00:00:00.000Z' });

  test('the first certificate turns HTTPS on; the same name again replaces it', () => {
    const first = withCertificate(state(null), cert('a.example.com'));
    assert.deepEqual(first.next.https?.certificates, [cert('a.example.com')]);
    const again = withCertificate(first.next, cert('a.example.com', 'www.example.com'));
    assert.deepEqual(again.next.https?.certificates, [cert('a.example.com', 'www.example.com')]);
    assert.deepEqual(again.dropped, []);
  });

  test('a new certificate takes over the domains it names; one left with none is dropped (its lineage goes)', () => {
    const before = state([cert('a.example.com', 'b.example.com'), cert('c.example.com')]);
    const { next, dropped } = withCertificate(before, cert('b.example.com', 'c.example.com'));
    assert.deepEqual(next.https?.certificates.map((c) => [c.name, c.domains]), [
      ['a.example.com', ['a.example.com']],
      ['b.example.com', ['b.example.com', 'c.example.com']],
    ]);
    assert.deepEqual(dropped, ['c.example.com']);
    assert.doesNotThrow(() => renderNginx({ apis: [], forward: null, certificates: next.https?.certificates ?? [] }));
  });
});

describe('the controller refuses locally', () => {
  test('domains are lower-cased and each taken once; bad ones are named', () => {
    assert.deepEqual(checkHttpsOptions({ domains: ['API.Example.com', 'api.example.com'], email: 'ops@example.com' }), { domains: ['api.example.com'], email: 'ops@example.com' });
    const refused = (opts: Parameters<typeof checkHttpsOptions>[0], pattern: RegExp) => assert.throws(() => checkHttpsOptions(opts), (err: unknown) => err instanceof ValidationError && pattern.test(err.message) && !err.message.includes('\n'));
    refused({ domains: ['exa mple.com'], email: 'a@b.co' }, /^invalid domain "exa mple\.com"/);
    refused({ domains: ['x'], email: 'a@b.co' }, /^invalid domain "x"/);
    refused({ domains: ['https://a.example.com'], email: 'a@b.co' }, /^invalid domain/);
    refused({ domains: ['*.example.com'], email: 'a@b.co' }, /^invalid domain/);
    refused({ domains: [], email: 'a@b.co' }, /at least one --domain/);
    refused({ domains: ['a.example.com'], email: 'ops.example.com' }, /^invalid email "ops\.example\.com"/);
    refused({ domains: ['a.example.com'] }, /--email is needed/);
    refused({ domains: Array.from({ length: 21 }, (_, i) => `d${i}.example.com`), email: 'a@b.co' }, /at most 20/);
  });

  test("the ACME server: Let's Encrypt, its staging with --staging, PLUMB_ACME_SERVER over both", () => {
    assert.equal(acmeServer({}, {}), LETS_ENCRYPT);
    assert.equal(acmeServer({ staging: true }, {}), LETS_ENCRYPT_STAGING);
    assert.equal(acmeServer({}, { PLUMB_ACME_SERVER: 'https://10.213.0.1:14000/dir' }), 'https://10.213.0.1:14000/dir');
    assert.throws(() => acmeServer({ staging: true }, { PLUMB_ACME_SERVER: 'https://10.213.0.1:14000/dir' }), ValidationError);
    assert.throws(() => acmeServer({}, { PLUMB_ACME_SERVER: 'ftp://x' }), /invalid PLUMB_ACME_SERVER/);
    assert.throws(() => dnsResolver({ PLUMB_DNS_SERVER: 'not an address' }), /invalid PLUMB_DNS_SERVER/);
  });

  test('DNS: each way a domain can fail to point at the droplet is said plainly', async () => {
    const answers: Record<string, { a?: string[] | string; aaaa?: string[] }> = {
      'ok.example.com': { a: ['203.0.113.7'] },
      'elsewhere.example.com': { a: ['198.51.100.1'] },
      'none.example.com': { a: 'ENOTFOUND' },
      'broken.example.com': { a: 'ESERVFAIL' },
      'two.example.com': { a: ['203.0.113.7', '198.51.100.1'] },
      'six.example.com': { a: ['203.0.113.7'], aaaa: ['2001:db8::1'] },
    };
    const fail = (code: string) => Promise.reject(Object.assign(new Error(code), { code }));
    // A resolver answering from the table: the real one is exercised end to end against the lab's DNS.
    const resolver = {
      resolve4: (d: string) => (typeof answers[d]?.a === 'string' ? fail(answers[d].a) : Promise.resolve(answers[d]?.a ?? [])),
      resolve6: (d: string) => (answers[d]?.aaaa ? Promise.resolve(answers[d].aaaa) : fail('ENODATA')),
    } as unknown as Resolver;
    const problem = (d: string) => domainProblem(resolver, d, '203.0.113.7');
    assert.equal(await problem('ok.example.com'), undefined);
    assert.equal(await problem('elsewhere.example.com'), 'elsewhere.example.com resolves to 198.51.100.1');
    assert.equal(await problem('none.example.com'), 'none.example.com has no A record');
    assert.equal(await problem('broken.example.com'), 'broken.example.com could not be looked up (ESERVFAIL)');
    assert.match((await problem('two.example.com')) ?? '', /not only to the droplet/);
    assert.match((await problem('six.example.com')) ?? '', /AAAA record \(2001:db8::1\)/);
  });
});
