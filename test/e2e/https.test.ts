import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import type { StatusResult } from '@plumb/shared';
import type { AcmeServer } from '../lab/acme.js';
import { DROPLET_ACME_CA } from '../lab/acme.js';
import type { Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { startHttp2Load, startLoad, type LoadReport } from './load.js';
import { agentAnswersAgain, sharedDroplet, type PlumbUser } from './plumb.js';

/**
 * The seed's do_configure_https as `plumb https`: real certbot on a lab droplet, run by the agent,
 * against the lab's ACME server (pebble), whose DNS (challtestsrv) the controller checks too.
 */

const DOMAIN = 'api.lab.test';
const WWW = 'www.lab.test';
const OTHER = 'other.lab.test';
const EMAIL = 'ops@lab.test';

let lab: Lab;
let acme: AcmeServer;
let user: PlumbUser;
let dropletId: number;
let address: string;
/** What a user of the lab sets: pebble as the ACME server, challtestsrv as DNS, trust in pebble's listener. */
let acmeEnv: Record<string, string>;

const onDroplet = (argv: string[], timeoutMs?: number) => lab.droplet(dropletId).exec(argv, timeoutMs === undefined ? {} : { timeoutMs });
const plumbHttps = (args: string[]) => user.plumb(['https', ...args], { env: acmeEnv });

/** nginx's config and ufw's rules, byte for byte, and what ufw says it does. */
const nginxAndFirewall = () => onDroplet(['sh', '-c', 'cat /etc/nginx/conf.d/plumb.conf; echo "== ufw"; cat /etc/ufw/user.rules /etc/ufw/user6.rules; ufw status numbered']);

/** New TCP connections the droplet's firewall let in to the agent's port: how "nothing reached the droplet" shows. */
async function agentConnections(): Promise<number> {
  const chain = await onDroplet(['iptables', '-w', '-L', 'ufw-user-input', '-v', '-n', '-x']);
  const line = chain.split('\n').find((l) => /dpt:8731\b/.test(l));
  assert.ok(line, `no rule for the agent's port in\n${chain}`);
  return Number(line.trim().split(/\s+/)[0]);
}

interface Answer {
  status: number;
  body: string;
  location: string | undefined;
  serial: string | undefined;
}

/** GET https://DOMAIN/PATH from the host, DOMAIN mapped to the droplet, the chain checked against pebble's issuing root only. */
async function httpsGet(domain: string, path: string, timeoutMs = 5000): Promise<Answer> {
  const ca = await acme.issuingRootPem();
  return new Promise((resolve, reject) => {
    const req = https.get({ host: address, servername: domain, headers: { host: domain }, path, ca, agent: false, timeout: timeoutMs }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location, serial }));
    });
    req.on('timeout', () => req.destroy(new Error(`https://${domain}${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** GET http://DOMAIN/PATH from the host (by the droplet's address, with DOMAIN as Host). */
function httpGetAs(domain: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address, headers: { host: domain }, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location, serial: undefined }));
    });
    req.on('timeout', () => req.destroy(new Error(`http://${domain}${path}: no answer`)));
    req.on('error', reject);
  });
}

/** How many times systemd has reloaded nginx on the droplet (its journal's "Reloaded nginx.service" lines). */
const nginxReloads = async () => (await onDroplet(['journalctl', '-u', 'nginx', '-o', 'cat', '--no-pager'])).split('\n').filter((l) => l.startsWith('Reloaded nginx.service')).length;

const literally = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const httpServes = async () => assert.deepEqual(JSON.parse((await httpGet(`http://${address}/sum/add?a=1&b=2`, 5000)).body), [3], 'HTTP still serves');
const servedSerial = async (domain = DOMAIN) => (await httpsGet(domain, '/sum/add?a=1&b=2')).serial;

sharedDroplet(
  'secure',
  async (shared) => {
    ({ lab, user, id: dropletId, address } = shared);
    assert.ok(lab.acme);
    acme = lab.acme;
    acmeEnv = { PLUMB_ACME_SERVER: acme.directoryUrl, PLUMB_DNS_SERVER: acme.dnsServer, NODE_EXTRA_CA_CERTS: acme.listenerCaPath };
    const deployed = await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'sum']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    for (const domain of [DOMAIN, WWW, OTHER]) await acme.resolve(domain, address);
  },
  { acme: true },
);

describe('refused before anything reaches the droplet', () => {
  const cases: Array<[string, string[], () => RegExp | Promise<RegExp>]> = [
    [
      'no --agree-tos: the terms of service, as the ACME directory gives them',
      ['--domain', DOMAIN, '--email', EMAIL],
      async () => {
        const directory = JSON.parse(await fetchDirectory()) as { meta: { termsOfService: string } };
        return new RegExp(`--agree-tos is needed: .*${literally(directory.meta.termsOfService)}`);
      },
    ],
    ['a domain with a space', ['--domain', 'exa mple.com', '--email', EMAIL, '--agree-tos'], () => /invalid domain "exa mple\.com"/],
    ['-d x', ['-d', 'x', '--email', EMAIL, '--agree-tos'], () => /invalid domain "x"/],
    ['an email without @', ['--domain', DOMAIN, '--email', 'ops.lab.test', '--agree-tos'], () => /invalid email "ops\.lab\.test"/],
  ];
  for (const [what, args, message] of cases) {
    test(`${what}: one line, non-zero exit, no connection to the agent, nginx and ufw byte-identical`, async () => {
      const before = await nginxAndFirewall();
      const connections = await agentConnections();
      const result = await plumbHttps(args);
      assert.notEqual(result.exitCode, 0);
      const lines = result.stderr.trim().split('\n').filter((l) => !l.startsWith('['));
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0] ?? '', /^plumb: /);
      assert.match(lines[0] ?? '', await message());
      assert.equal(await agentConnections(), connections, 'the agent saw a connection');
      assert.equal(await nginxAndFirewall(), before);
    });
  }
});

/** The lab's ACME directory, fetched as the controller does (trusting pebble's listener CA). */
function fetchDirectory(): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(acme.directoryUrl, { ca: acme.listenerCaPem, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

describe('failures leave nginx and the firewall as they were, and HTTP serving', () => {
  test('a domain that does not point at the droplet: said plainly, before the droplet is asked', async () => {
    await acme.resolve('elsewhere.lab.test', '10.213.0.1');
    const before = await nginxAndFirewall();
    const connections = await agentConnections();
    const result = await plumbHttps(['--domain', 'elsewhere.lab.test', '--email', EMAIL, '--agree-tos']);
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, new RegExp(`plumb: not pointing at droplet secure \\(${literally(address)}\\).*elsewhere\\.lab\\.test resolves to 10\\.213\\.0\\.1`));
    assert.match(result.stderr, /A record/);
    assert.equal(await agentConnections(), connections);
    assert.equal(await nginxAndFirewall(), before);
    await httpServes();
  });

  test('an ACME server that refuses (its HTTP-01 validation fails): certbot\'s own reason; 443 closed again', async () => {
    // The controller's DNS check is skipped; pebble's validation reaches an address with nothing on port 80.
    await acme.resolve('refused.lab.test', '10.213.0.1');
    const before = await nginxAndFirewall();
    const result = await plumbHttps(['--domain', 'refused.lab.test', '--email', EMAIL, '--agree-tos', '--skip-dns-check']);
    assert.equal(result.exitCode, 1);
    assert.match(result.stderr, /plumb: failed at "certificate": certbot could not get a certificate: refused\.lab\.test \(connection\): .*10\.213\.0\.1:80.*connection refused/);
    assert.match(result.stderr, /nothing was changed/);
    assert.equal(await nginxAndFirewall(), before);
    assert.doesNotMatch(await onDroplet(['ufw', 'status']), /443/);
    await httpServes();
  });
});

describe('plumb https', () => {
  test(`${DOMAIN}: HTTPS with a chain to pebble's root, HTTP redirected (not the ACME challenges), 443 open, nginx reloaded once`, async () => {
    const reloads = await nginxReloads();
    const result = await plumbHttps(['--domain', DOMAIN, '--email', EMAIL, '--agree-tos']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal((await nginxReloads()) - reloads, 1, 'the config with HTTPS on reads the new certificate: one reload');
    assert.match(result.stdout, new RegExp(`HTTPS is on at secure for ${literally(DOMAIN)}: certificate ${literally(DOMAIN)} issued, expires \\d{4}-\\d\\d-\\d\\d`));
    assert.match(result.stdout, /port 443 opened/);

    const answer = await httpsGet(DOMAIN, '/sum/add?a=1&b=2');
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), [3]);

    const redirect = await httpGetAs(DOMAIN, '/sum/add?a=1&b=2');
    assert.equal(redirect.status, 301);
    assert.equal(redirect.location, `https://${DOMAIN}/sum/add?a=1&b=2`);
    assert.equal((await httpGetAs(DOMAIN, '/.well-known/acme-challenge/nothing-here')).status, 404, 'challenges stay on HTTP');
    await httpServes();

    assert.match(await onDroplet(['ufw', 'status']), /^443\/tcp\s+ALLOW/m);
    await onDroplet(['nginx', '-t']);
  });

  test('plumb status shows the certificate and its expiry', async () => {
    const served = await httpsGet(DOMAIN, '/sum/version');
    const json = await user.plumb(['status', '--json']);
    assert.equal(json.exitCode, 0, json.stderr);
    const [droplet] = JSON.parse(json.stdout) as Array<{ status: StatusResult }>;
    const certificate = droplet?.status.heartbeat.certificates.find((c) => c.name === DOMAIN);
    assert.ok(certificate, json.stdout);
    assert.deepEqual(certificate.domains, [DOMAIN]);
    assert.ok(certificate.daysLeft > 30);
    const text = await user.plumb(['status']);
    assert.match(text.stdout, new RegExp(`https ${literally(DOMAIN)}: certificate ${literally(DOMAIN)} expires ${certificate.expiresAt.slice(0, 10)}`));
    assert.ok(served.serial);
  });

  test('an API deployed after HTTPS is on is served over HTTPS too, and so is the forward', async () => {
    const deployed = await user.plumb(['deploy', await apiDir(sumApi('v2')), '--name', 'hello']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.deepEqual(JSON.parse((await httpsGet(DOMAIN, '/hello/version')).body), ['v2']);
    assert.equal((await user.plumb(['forward', 'sum'])).exitCode, 0);
    assert.deepEqual(JSON.parse((await httpsGet(DOMAIN, '/add?a=2&b=3')).body), [5]);
    assert.equal((await httpGetAs(DOMAIN, '/add?a=2&b=3')).location, `https://${DOMAIN}/add?a=2&b=3`);
  });
});

describe('renewal', () => {
  test('certbot.timer is on, the renewal runs from the webroot against the same server, and its service runs', async () => {
    assert.equal(await onDroplet(['systemctl', 'is-enabled', 'certbot.timer']), 'enabled');
    assert.equal(await onDroplet(['systemctl', 'is-active', 'certbot.timer']), 'active');
    const renewal = await onDroplet(['cat', `/etc/letsencrypt/renewal/${DOMAIN}.conf`]);
    assert.match(renewal, /^authenticator = webroot$/m);
    assert.match(renewal, /^webroot_path = \/var\/lib\/plumb\/acme,?$/m);
    assert.match(renewal, new RegExp(`^server = ${literally(acme.directoryUrl)}$`, 'm'));
    await onDroplet(['test', '-x', '/etc/letsencrypt/renewal-hooks/deploy/plumb-reload-nginx']);
    await onDroplet(['systemctl', 'start', 'certbot.service'], 120_000);
    assert.equal(await onDroplet(['systemctl', 'show', '-p', 'Result', '--value', 'certbot.service']), 'success');
  });

  test('certbot renew --force-renewal: a new certificate is served, nginx reloaded by the hook, no request fails', async (t) => {
    const before = await servedSerial();
    const since = (await onDroplet(['date', '+%s'])).trim();
    let stop = false;
    let sent = 0;
    const failures: string[] = [];
    // 20 requests a second, each on a new connection, for as long as the renewal takes.
    const load = (async () => {
      while (!stop && sent < 20 * 120) {
        const tick = Date.now();
        sent++;
        await httpsGet(DOMAIN, '/sum/add?a=1&b=2').then(
          (a) => void (a.status !== 200 && failures.push(`HTTP ${a.status}`)),
          (err: Error) => void failures.push(err.message),
        );
        await new Promise((r) => setTimeout(r, Math.max(0, 50 - (Date.now() - tick))));
      }
    })();
    try {
      await onDroplet(['env', `REQUESTS_CA_BUNDLE=${DROPLET_ACME_CA}`, 'certbot', 'renew', '--force-renewal', '--no-random-sleep-on-renew', '--non-interactive'], 180_000);
      let after = await servedSerial();
      for (let i = 0; i < 50 && after === before; i++) {
        await new Promise((r) => setTimeout(r, 200));
        after = await servedSerial();
      }
      assert.notEqual(after, before, 'the renewed certificate is served');
    } finally {
      stop = true;
      await load;
    }
    assert.deepEqual(failures, [], `${failures.length} of ${sent} requests failed`);
    assert.ok(sent >= 10, `only ${sent} requests were made during the renewal`);
    t.diagnostic(`${sent} HTTPS requests during the renewal, none failed`);
    const journal = await onDroplet(['journalctl', '-u', 'nginx', '--since', `@${since}`, '-o', 'cat', '--no-pager']);
    assert.match(journal, /Reloaded nginx\.service/, 'nginx was reloaded (by the deploy hook; the agent was not asked)');
  });
});

describe('running plumb https again is safe', () => {
  test('adding a domain to the certificate: both served, 443 allowed once', async () => {
    const result = await plumbHttps(['--domain', DOMAIN, '--domain', WWW, '--email', EMAIL, '--agree-tos']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /port 443 opened/);
    for (const domain of [DOMAIN, WWW]) assert.deepEqual(JSON.parse((await httpsGet(domain, '/sum/add?a=1&b=2')).body), [3]);
    assert.equal((await onDroplet(['ufw', 'status'])).split('\n').filter((l) => l.startsWith('443/tcp')).length, 2, 'one rule, v4 and v6');
  });

  test('again without --force: the certificate is kept, nothing changes (nginx not reloaded); with --force: a new one', async () => {
    const before = await nginxAndFirewall();
    const serial = await servedSerial();
    const reloads = await nginxReloads();
    const kept = await plumbHttps(['-d', DOMAIN, '-d', WWW, '--email', EMAIL, '--agree-tos', '--json']);
    assert.equal(kept.exitCode, 0, kept.stderr);
    assert.equal((JSON.parse(kept.stdout) as { outcome: string }).outcome, 'kept');
    assert.equal(await nginxAndFirewall(), before);
    assert.equal(await servedSerial(), serial);
    assert.equal(await nginxReloads(), reloads, 'the certificate served is the one on disk: no reload');

    const forced = await plumbHttps(['-d', DOMAIN, '-d', WWW, '--email', EMAIL, '--agree-tos', '--force', '--json']);
    assert.equal(forced.exitCode, 0, forced.stderr);
    const result = JSON.parse(forced.stdout) as { outcome: string; certificate: { serial: string } };
    assert.equal(result.outcome, 'issued');
    assert.equal(await servedSerial(), result.certificate.serial);
    assert.notEqual(result.certificate.serial, serial);
  });

  test('a certificate on disk that nginx does not serve (as a reload that failed after the state was saved leaves it): the rerun keeps it and serves it', async () => {
    const serial = await servedSerial();
    // A renewal whose deploy hook does not run: new files, nginx not told.
    await onDroplet(['env', `REQUESTS_CA_BUNDLE=${DROPLET_ACME_CA}`, 'certbot', 'renew', `--cert-name=${DOMAIN}`, '--force-renewal', '--no-directory-hooks', '--no-random-sleep-on-renew', '--non-interactive'], 180_000);
    assert.equal(await servedSerial(), serial, 'nginx still serves the old certificate');
    const rerun = await plumbHttps(['-d', DOMAIN, '-d', WWW, '--email', EMAIL, '--agree-tos', '--json']);
    assert.equal(rerun.exitCode, 0, rerun.stderr);
    const result = JSON.parse(rerun.stdout) as { outcome: string; certificate: { serial: string } };
    assert.equal(result.outcome, 'kept');
    assert.notEqual(result.certificate.serial, serial);
    assert.equal(await servedSerial(), result.certificate.serial, 'the certificate on disk is served');
  });

  test('a second certificate for another domain: each name gets its own, over SNI', async () => {
    const result = await plumbHttps(['--domain', OTHER, '--email', EMAIL, '--agree-tos']);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.deepEqual(JSON.parse((await httpsGet(OTHER, '/sum/add?a=1&b=2')).body), [3]);
    assert.deepEqual(JSON.parse((await httpsGet(DOMAIN, '/sum/add?a=1&b=2')).body), [3]);
    assert.notEqual(await servedSerial(OTHER), await servedSerial(DOMAIN));
    await onDroplet(['nginx', '-t']);
  });

  test('restarting the agent changes nothing that serves', async () => {
    const before = await nginxAndFirewall();
    await onDroplet(['systemctl', 'restart', 'plumb-agent']);
    assert.ok(await agentAnswersAgain(user), 'the agent answers plumb again');
    assert.equal(await nginxAndFirewall(), before);
    assert.deepEqual(JSON.parse((await httpsGet(DOMAIN, '/sum/add?a=1&b=2')).body), [3]);
  });
});

describe('keep-alive over HTTPS and HTTP/2 through switches', () => {
  test('HTTPS keep-alive connections and one HTTP/2 connection kept open across 3 redeploys: 0 failed requests, 0 connection errors, no connection closed, nginx never reloaded', async () => {
    assert.match(await onDroplet(['cat', '/etc/nginx/conf.d/plumb.conf']), /^ {4}http2 on;$/m);
    const tls = { ca: await acme.issuingRootPem(), servername: DOMAIN };
    const nginxWorkers = () => onDroplet(['sh', '-c', 'm=$(cat /run/nginx.pid); cat /proc/$m/task/$m/children']);
    const workersBefore = await nginxWorkers();
    const kept = startLoad(`https://${address}/sum/version`, { rps: 40, concurrency: 4, keepAlive: true, maxMs: 300_000, tls });
    const multiplexed = startHttp2Load(`https://${address}/sum/version`, { rps: 40, concurrency: 4, maxMs: 300_000, tls });
    let reports: LoadReport[] = [];
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 1; i <= 3; i++) {
        const deployed = await user.plumb(['deploy', await apiDir(sumApi(`ka${i}`)), '--name', 'sum']);
        assert.equal(deployed.exitCode, 0, deployed.stderr);
      }
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      reports = [await kept.stop(), await multiplexed.stop()];
    }
    for (const [what, report] of [['HTTPS keep-alive', reports[0]], ['HTTP/2', reports[1]]] as const) {
      assert.ok(report && report.ok > 100, `${what}: the load ran (${report?.ok} answers)`);
      assert.equal(report.failed, 0, `${what}: ${report.failures.join('\n')}`);
      assert.equal(report.connectionErrors, 0, `${what}: ${report.failures.join('\n')}`);
    }
    // nginx closes a connection after 1000 requests (keepalive_requests, for HTTP/2 too); a reload would close them all.
    assert.ok((reports[0]?.connections ?? 0) <= 4 + Math.ceil((reports[0]?.ok ?? 0) / 1000), `${reports[0]?.connections} HTTPS connections`);
    assert.ok((reports[1]?.connections ?? 0) <= 1 + Math.ceil((reports[1]?.ok ?? 0) / 1000), `${reports[1]?.connections} HTTP/2 connections`);
    assert.equal(await nginxWorkers(), workersBefore, 'the same nginx worker processes: no reload');
    assert.deepEqual(JSON.parse((await httpsGet(DOMAIN, '/sum/version')).body), ['ka3']);
  });
});
