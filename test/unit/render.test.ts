import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { API_MEMORY_MAX_DEFAULT, apiUser, PlumbError, SYSTEM_USER_MAX_CHARS } from '@plumb/shared';
import type { NginxModel } from '@plumb/agent/render/model';
import { frontPortsOf, ISOLATION_DROP_IN, renderIsolationUnit, renderNat, renderRoutingUnit } from '@plumb/agent/render/nat';
import { renderNginx } from '@plumb/agent/render/nginx';
import { REQUEST_WARM_UP_R, RUNNER_R } from '@plumb/agent/render/runner';
import { renderApiUnit, renderInstanceEnv, renderSpareEnv, renderUserEnv } from '@plumb/agent/render/systemd';
import { parseInstanceEnv } from '@plumb/agent/state-recovery';
import { aptArchiveDir } from '../lab/paths.js';
import { IMAGE_OVERLAY_PRELUDE } from '../lab/droplets/prefetch.js';
import { rootfsDir, rootfsReady } from '../lab/droplets/rootfs.js';
import { envCases, refusedEnvValues } from '../cases/env-values.js';

/** The files plumb-agent writes: pure renderers, checked by their text and by nginx 1.26, systemd 257 and R in the droplet image. */

const RELEASE_SUM = '/var/plumber/sum/releases/20261125T190000Z-1a2b';
const RELEASE_HELLO = '/var/plumber/hello-world/releases/20261125T190500Z-3c4d';

const twoApis: NginxModel = {
  apis: [
    { name: 'sum', path: '/sum', frontPort: 7001, instances: [{ port: 9001 }, { port: 9000 }] },
    { name: 'hello-world', path: '/api/hello', frontPort: 7002, instances: [{ port: 9002 }] },
  ],
  forward: 'sum',
};
/** The uids of twoApis' users, as the agent reads them from /etc/passwd. */
const twoUids = new Map([['sum', 998], ['hello-world', 997]]);


function refused(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof PlumbError, `a PlumbError, got ${String(error)}`);
    assert.equal(error.code, 'RENDER_REFUSED');
    assert.match(error.message, pattern);
    return true;
  });
}

/** The block that starts with the line `opening` (e.g. `    location /sum/ {`), through its closing brace. */
function block(config: string, opening: string): string {
  const start = config.indexOf(`\n${opening}\n`);
  assert.notEqual(start, -1, `no "${opening}" in:\n${config}`);
  const close = `\n${/^ */.exec(opening)?.[0] ?? ''}}\n`;
  return config.slice(start + 1, config.indexOf(close, start) + close.length);
}

describe('nginx: /etc/nginx/conf.d/plumb.conf', () => {
  test('upstreams are the APIs\' front ports on 127.0.0.1, never localhost, without keepalive (Nagle), tried twice, and name no worker (a switch needs no reload)', () => {
    const config = renderNginx(twoApis);
    assert.doesNotMatch(config, /localhost|\[::1\]/);
    assert.equal(block(config, 'upstream plumb_sum {').replace(/^ *\/\/.*\n|^ *#.*\n/gm, ''), 'upstream plumb_sum {\n    server 127.0.0.1:7001 max_fails=0;\n    server 127.0.0.1:7001 max_fails=0;\n}\n');
    assert.doesNotMatch(config, /^\s*keepalive /m);
    assert.doesNotMatch(config, /:9\d{3}/);
    const otherWorkers: NginxModel = { ...twoApis, apis: twoApis.apis.map((a) => ({ ...a, instances: [{ port: 9500 }, { port: 9501 }, { port: 9502 }] })) };
    assert.equal(renderNginx(otherWorkers), config, 'a change of workers leaves nginx\'s file as it is');
  });

  test('an API path strips its prefix: /sum/__docs__/ reaches plumber as /__docs__/, and /sum redirects to /sum/', () => {
    const config = renderNginx(twoApis);
    assert.match(config, /\n {4}location = \/sum \{\n {8}return 301 \/sum\/\$is_args\$args;\n {4}\}\n/);
    const sum = block(config, '    location /sum/ {');
    assert.match(sum, /\n {8}proxy_pass http:\/\/plumb_sum\/;\n/);
    assert.match(sum, /proxy_set_header X-Forwarded-Prefix \/sum;/);
    const hello = block(config, '    location /api/hello/ {');
    assert.match(hello, /proxy_pass http:\/\/plumb_hello-world\/;/);
    assert.match(hello, /proxy_set_header X-Forwarded-Prefix \/api\/hello;/);
  });

  test('every proxied location passes the client, the scheme and WebSocket upgrades, and retries a gone worker', () => {
    const config = renderNginx(twoApis);
    assert.match(config, /^map \$http_upgrade \$plumb_connection \{\n {4}default upgrade;\n {4}'' {6}'';\n\}$/m);
    const locations = ['    location /sum/ {', '    location /api/hello/ {', '    location / {'].map((l) => block(config, l));
    for (const location of locations) {
      for (const line of [
        'proxy_http_version 1.1;',
        'proxy_set_header Host $host;',
        'proxy_set_header X-Real-IP $remote_addr;',
        'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
        'proxy_set_header X-Forwarded-Proto $scheme;',
        'proxy_set_header Upgrade $http_upgrade;',
        'proxy_set_header Connection $plumb_connection;',
        'proxy_read_timeout 300s;',
        'proxy_next_upstream error timeout http_502;',
      ]) assert.ok(location.includes(`\n        ${line}\n`), `${line} in\n${location}`);
    }
  });

  test('forward: / goes to the API without stripping anything; without it / answers a 404 that says why', () => {
    const forwarded = block(renderNginx(twoApis), '    location / {');
    assert.match(forwarded, /\n {8}proxy_pass http:\/\/plumb_sum;\n/);
    assert.match(forwarded, /proxy_set_header X-Forwarded-Prefix "";/);

    const config = renderNginx({ ...twoApis, forward: null });
    assert.equal(
      block(config, '    location / {'),
      '    location / {\n        default_type text/plain;\n        return 404 "plumb: no API is served at /. Deployed APIs are under their own paths.\\n";\n    }\n',
    );
    assert.doesNotMatch(config, /proxy_pass http:\/\/plumb_sum;/);
  });

  test('the server is the default on port 80 (v4 and v6) and serves ACME challenges from the agent\'s webroot', () => {
    for (const model of [twoApis, { apis: [], forward: null }]) {
      const config = renderNginx(model);
      for (const line of ['listen 80 default_server;', 'listen [::]:80 default_server;', 'server_name _;', 'client_max_body_size 64m;', 'server_tokens off;']) {
        assert.ok(config.includes(`\n    ${line}\n`), line);
      }
      assert.ok(config.includes('\n    location ^~ /.well-known/acme-challenge/ {\n        root /var/lib/plumb/acme;\n        default_type text/plain;\n    }\n'));
      assert.match(config, /^# Written by plumb-agent .*overwritten/);
    }
  });

  test('the same state gives the same file, whatever the order of APIs and workers; no trailing whitespace', () => {
    const reversed: NginxModel = { forward: 'sum', apis: twoApis.apis.map((a) => ({ ...a, instances: [...a.instances].reverse() })).reverse() };
    const config = renderNginx(twoApis);
    assert.equal(renderNginx(reversed), config);
    assert.ok(config.indexOf('location /api/hello/ {') < config.indexOf('location /sum/ {'), 'APIs sorted by path');
    assert.doesNotMatch(config, /[ \t]$/m);
    assert.ok(config.endsWith('}\n') && !config.endsWith('\n\n'));
  });

  test('an API without a live worker answers 503 at its path and has no upstream', () => {
    const config = renderNginx({ apis: [{ name: 'idle', path: '/idle', frontPort: 7003, instances: [] }], forward: 'idle' });
    assert.doesNotMatch(config, /upstream|proxy_pass http:\/\/plumb_/);
    const expected = '        default_type text/plain;\n        return 503 "plumb: API idle has no running worker.\\n";\n    }\n';
    assert.ok(block(config, '    location /idle/ {').endsWith(expected));
    assert.ok(block(config, '    location / {').endsWith(expected));
  });

  test('one API, whole file', () => {
    assert.equal(
      renderNginx({ apis: [{ name: 'hello', path: '/hello', frontPort: 7004, instances: [{ port: 9000 }] }], forward: null }),
      `# Written by plumb-agent from its state (/var/lib/plumb/state.json); edits here are overwritten.
# Change what is served with plumb (deploy, remove, forward); \`plumb status\` shows it.

# WebSocket upgrades are passed through; plain requests ask for nothing special.
map $http_upgrade $plumb_connection {
    default upgrade;
    ''      '';
}

upstream plumb_hello {
    server 127.0.0.1:7004 max_fails=0;
    server 127.0.0.1:7004 max_fails=0;
}

map $upstream_http_location $plumb_self_redirect_7004 {
    "~^https?://[^/]+/hello(?:[/?]|$)" /hello;
    default /hello/hello;
}

server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name _;
    client_max_body_size 64m;
    server_tokens off;
    keepalive_requests 100000;
    absolute_redirect off;

    location ^~ /.well-known/acme-challenge/ {
        root /var/lib/plumb/acme;
        default_type text/plain;
    }
    location = /__plumb/health {
        proxy_pass http://127.0.0.1:8732;
        proxy_connect_timeout 2s;
        proxy_read_timeout 5s;
    }

    # API hello: /hello/X reaches it as /X (so /hello/__docs__/ is plumber's /__docs__/).
    location = /hello {
        return 301 /hello/$is_args$args;
    }
    location /hello/ {
        proxy_pass http://plumb_hello/;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Prefix /hello;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $plumb_connection;
        proxy_read_timeout 300s;
        proxy_next_upstream error timeout http_502;
        proxy_next_upstream_timeout 1s;
        proxy_redirect ~^(/hello(?:[/?].*)?)$ $1;
        proxy_redirect http://$host/hello $plumb_self_redirect_7004;
        proxy_redirect https://$host/hello $plumb_self_redirect_7004;
        proxy_redirect http://$host/ /hello/;
        proxy_redirect https://$host/ /hello/;
        proxy_redirect / /hello/;
    }

    location / {
        default_type text/plain;
        return 404 "plumb: no API is served at /. Deployed APIs are under their own paths.\\n";
    }
}
`,
    );
  });

  test('refuses a model that would make a broken or hostile file', () => {
    const one = (name: string, p: string, ports = [9000], frontPort = 7000): NginxModel => ({ apis: [{ name, path: p, frontPort, instances: ports.map((port) => ({ port })) }], forward: null });
    refused(() => renderNginx(one('a b', '/a')), /API name "a b"/);
    refused(() => renderNginx(one('a;', '/a')), /API name/);
    refused(() => renderNginx(one('Sum', '/a')), /API name/);
    for (const bad of ['/a b', '/a;', '/a{', '/a$x', '/../x', '/x/', '/', 'x', '/a/./b', "/a'"]) refused(() => renderNginx(one('a', bad)), /URL path/);
    refused(() => renderNginx(one('a', '/a', [80])), /port 80 .*9000-9999/);
    refused(() => renderNginx(one('a', '/a', [9000.5])), /port/);
    refused(() => renderNginx(one('a', '/a', [9000, 9000])), /port 9000 twice/);
    refused(() => renderNginx(one('a', '/a', [9000], 8731)), /front port 8731 .*7000-7999/);
    refused(() => renderNat(one('a', '/a', [9000], 80), new Map()), /front port 80/);
    for (const uid of [0, 33, -1, 1.5]) refused(() => renderNat(one('a', '/a'), new Map([['a', uid]])), new RegExp(`uid ${uid} of API a`));
    refused(() => renderNginx({ ...one('a', '/a'), forward: 'b' }), /forward to "b"/);
    const twice = (b: { name: string; path: string }): NginxModel => ({ apis: [{ name: 'a', path: '/a', frontPort: 7005, instances: [] }, { ...b, frontPort: 7006, instances: [] }], forward: null });
    refused(() => renderNginx(twice({ name: 'a', path: '/b' })), /API a twice/);
    refused(() => renderNginx(twice({ name: 'b', path: '/a' })), /two APIs at \/a/);
  });
});

describe('nftables: the front ports', () => {
  test('each API\'s front port goes to its live workers in turn; the whole table is replaced in one transaction; an idle API has no rule', () => {
    const rules = renderNat({ apis: [...twoApis.apis, { name: 'idle', path: '/idle', frontPort: 7003, instances: [] }] }, new Map());
    const lines = rules.split('\n');
    assert.deepEqual(lines.slice(3, 6), ['table ip plumb', 'delete table ip plumb', 'table ip plumb {']);
    assert.ok(lines.includes('        ip daddr 127.0.0.1 tcp dport 7001 dnat to 127.0.0.1 : numgen inc mod 2 map { 0 : 9000, 1 : 9001 } comment "sum"'), rules);
    assert.ok(lines.includes('        ip daddr 127.0.0.1 tcp dport 7002 dnat to 127.0.0.1 : numgen inc mod 1 map { 0 : 9002 } comment "hello-world"'), rules);
    assert.doesNotMatch(rules, /7003|idle/);
    assert.equal(renderNat({ apis: [...twoApis.apis].reverse() }, twoUids), renderNat(twoApis, twoUids));
    assert.deepEqual(frontPortsOf(rules), [7002, 7001], 'what the boot unit waits for: the ports with workers');
  });

  test('the front and worker ports are closed on loopback to all but the agent, nginx and the API\'s own user; the metadata address to every API user', () => {
    const idle = { name: 'idle', path: '/idle', frontPort: 7003, instances: [] };
    const lines = renderNat({ apis: [...twoApis.apis, idle] }, new Map([...twoUids, ['idle', 996]])).split('\n');
    for (const line of [
      '        type filter hook output priority filter; policy accept;',
      '        ip daddr 169.254.169.254 meta skuid { 996, 997, 998 } reject comment "no metadata service for the APIs"',
      '        ip daddr 127.0.0.0/8 tcp dport { 7000-7999, 9000-9999 } ct state new jump api_ports',
      '        meta skuid { 0, 33 } accept comment "the agent, nginx"',
      // After the DNAT: a worker's port is what the filter sees of a front-port connection.
      '        meta skuid . tcp dport { 997 . 7002, 997 . 9002, 996 . 7003, 998 . 7001, 998 . 9000, 998 . 9001 } accept comment "each API its own"',
      '        reject with tcp reset',
    ]) assert.ok(lines.includes(line), `${line} in\n${lines.join('\n')}`);
    const none = renderNat({ apis: [] }, new Map());
    assert.doesNotMatch(none, /skuid \{ \d+ \}|169\.254|\{ \}/, 'no empty set (nft refuses one), no metadata rule without APIs');
    assert.match(none, /reject with tcp reset/);
    assert.doesNotMatch(renderNat(twoApis, new Map([['sum', 998]])), /997/, 'an API whose user is missing owns nothing');
  });

  test('at boot the saved table is loaded before any worker and nginx start (after nftables.conf\'s flush), then the workers are waited for, bounded, before nginx', () => {
    const has = (unit: string, lines: string[]) => {
      for (const line of lines) assert.ok(unit.split('\n').includes(line), `${line} in\n${unit}`);
    };
    has(renderIsolationUnit('/var/lib/plumb/nat.nft'), ['Before=nginx.service', 'After=local-fs.target nftables.service', 'Type=oneshot', 'RemainAfterExit=yes', 'ExecStart=/usr/sbin/nft -f /var/lib/plumb/nat.nft', 'WantedBy=multi-user.target']);
    has(ISOLATION_DROP_IN, ['[Unit]', 'Wants=plumb-isolation.service', 'After=plumb-isolation.service']);
    has(renderRoutingUnit('/var/lib/plumb/nat.nft', ['/usr/bin/node', '/opt/plumb-agent/current/bundle/plumb-agent.mjs']), ['After=plumb-isolation.service', 'Before=nginx.service', 'Type=oneshot', 'RemainAfterExit=yes', 'ExecStart=/usr/bin/node /opt/plumb-agent/current/bundle/plumb-agent.mjs --wait-for-workers', 'WantedBy=multi-user.target']);
  });
});

describe('systemd: the worker unit and its environment files', () => {
  test('the template unit runs the runner as the API\'s own user, sandboxed, restarting on failure, with no secret in it', () => {
    const unit = renderApiUnit('sum');
    const lines = unit.split('\n');
    for (const line of [
      '[Unit]',
      'Description=plumber API sum (port %i)',
      'After=network.target',
      'StartLimitIntervalSec=60',
      'StartLimitBurst=10',
      '[Service]',
      'Type=simple',
      'User=plumber-sum',
      'Group=plumber-sum',
      'EnvironmentFile=/var/lib/plumb/instances/sum@%i.env',
      'Environment=PLUMB_PORT=%i PLUMB_API=sum',
      'Environment=HOME=/var/plumber/sum/home',
      'WorkingDirectory=/var/plumber/sum',
      'ExecStart=/usr/bin/Rscript --no-save --no-restore /usr/lib/plumb/run-api.R',
      'Restart=always',
      'RestartSec=1',
      'TimeoutStopSec=15',
      'KillSignal=SIGTERM',
      'SyslogIdentifier=plumber-sum',
      `MemoryMax=${API_MEMORY_MAX_DEFAULT}`,
      'OOMScoreAdjust=500',
      'UMask=0077',
      'NoNewPrivileges=yes',
      'CapabilityBoundingSet=',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'PrivateDevices=yes',
      'PrivateIPC=yes',
      'ProtectProc=invisible',
      'ProcSubset=pid',
      'ProtectKernelTunables=yes',
      'ProtectKernelModules=yes',
      'ProtectKernelLogs=yes',
      'ProtectControlGroups=yes',
      'ProtectClock=yes',
      'ProtectHostname=yes',
      'RestrictSUIDSGID=yes',
      'RestrictRealtime=yes',
      'LockPersonality=yes',
      'RestrictNamespaces=yes',
      'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
      'SystemCallArchitectures=native',
      'SystemCallFilter=@system-service',
      'ReadWritePaths=-/var/plumber/sum/releases -/var/plumber/sum/data -/var/plumber/sum/home',
      'InaccessiblePaths=-/var/lib/plumb -/etc/plumb-agent -/var/lib/cloud',
      'IPAddressDeny=169.254.169.254',
      '[Install]',
      'WantedBy=multi-user.target',
    ]) assert.ok(lines.includes(line), `${line} in\n${unit}`);
    assert.equal(lines.filter((l) => l.startsWith('EnvironmentFile=')).length, 1, 'one environment file: the worker\'s own');
    assert.doesNotMatch(unit, /[ \t]$/m);
    // Its comment's way to follow the log must keep following across redeploys (new ports).
    assert.match(unit, /journalctl -t plumber-sum -f/);
    assert.doesNotMatch(unit, /journalctl -u \S+ -f/);
    assert.equal(renderApiUnit('sum'), unit);
  });

  test('--memory replaces the default limit; there is always one', () => {
    const unit = renderApiUnit('sum', { memoryMax: '512M' });
    assert.deepEqual(unit.split('\n').filter((l) => l.startsWith('MemoryMax=')), ['MemoryMax=512M']);
    refused(() => renderApiUnit('sum', { memoryMax: '80%' }), /memory limit/);
  });

  test('each API\'s user is plumber-NAME; past systemd\'s 31 characters, a cut name and a hash, distinct and found from the name', () => {
    assert.equal(apiUser('sum'), 'plumber-sum');
    assert.equal(apiUser('a'.repeat(22)), `plumber-${'a'.repeat(22)}`);
    const long = ['a'.repeat(23), 'a'.repeat(40), `${'a'.repeat(39)}b`, 'reporting-service-for-the-finance-team', 'reporting-service-for-the-finance-tear'];
    const users = long.map(apiUser);
    for (const [i, user] of users.entries()) {
      assert.equal(user.length, SYSTEM_USER_MAX_CHARS, user);
      assert.ok(user.startsWith(`plumber-${(long[i] ?? '').slice(0, 14)}-`), user);
      assert.match(user, /^[a-z][a-z0-9_-]*$/, 'useradd\'s portable user names');
    }
    assert.equal(new Set(users).size, users.length);
    assert.equal(apiUser(long[4] ?? ''), apiUser(long[4] ?? ''), 'the same name, the same user');
    assert.match(renderApiUnit('a'.repeat(40)), new RegExp(`^User=${users[1]}$`, 'm'));
  });

  test('refuses an API name that is not one', () => {
    for (const bad of ['', 'Sum', 'a b', '../x', 'x\nExecStart=/bin/sh', 'a%i', 'a@b', 'x-']) refused(() => renderApiUnit(bad), /API name/);
  });

  test('a worker\'s own file names its release, then the user\'s env', () => {
    assert.equal(renderInstanceEnv(RELEASE_SUM), `PLUMB_RELEASE_DIR=${RELEASE_SUM}\n`);
    assert.equal(renderInstanceEnv(RELEASE_SUM, { B: '2', A: 'x y' }), `PLUMB_RELEASE_DIR=${RELEASE_SUM}\nA="x y"\nB="2"\n`);
    for (const bad of ['/var/plumber/sum/releases/x', '/var/plumber/sum/releases/20261125T190000Z-1a2b/..', '/var/plumber/../releases/20261125T190000Z-1a2b', 'relative', `${RELEASE_SUM} X=1`, `${RELEASE_SUM}\nX=1`]) {
      refused(() => renderInstanceEnv(bad), /release directory/);
    }
  });

  test("a warm spare's file names its fifo, the packages it loads, the live release's library, its --env and the API's secrets as a worker's file does; nothing that could add a line; no release (state recovery takes it for no worker)", () => {
    const generation = '/var/plumber/sum/library/g-0123456789abcdef';
    const withVars = renderSpareEnv('sum', generation, ['plumber'], { A: 'x y', TOKEN: 'from --env' }, { TOKEN: 's"$' });
    const worker = renderInstanceEnv(RELEASE_SUM, { A: 'x y', TOKEN: 'from --env' }, generation, { TOKEN: 's"$' });
    assert.equal(withVars, `PLUMB_SPARE=/var/plumber/sum/spare.fifo\nPLUMB_SPARE_PACKAGES="plumber"\n${worker.slice(worker.indexOf('\n') + 1)}`);
    assert.equal(parseInstanceEnv(withVars), undefined);
    refused(() => renderSpareEnv('sum', null, [], { 'A\nB': '1' }), /environment variable name/);
    refused(() => renderSpareEnv('sum', null, [], {}, { A: 'x\ny' }), /value of A/);
    assert.equal(renderSpareEnv('sum', generation, ['plumber', 'data.table']), `PLUMB_SPARE=/var/plumber/sum/spare.fifo\nPLUMB_SPARE_PACKAGES="plumber data.table"\nR_LIBS=${generation}\n`);
    assert.equal(renderSpareEnv('sum', undefined, []), 'PLUMB_SPARE=/var/plumber/sum/spare.fifo\nPLUMB_SPARE_PACKAGES=""\n');
    for (const bad of ['a b', 'x"\nX=1', '1abc', '']) refused(() => renderSpareEnv('sum', null, [bad]), /R package name/);
    refused(() => renderSpareEnv('sum\nX=1', null, []), /API name/);
    refused(() => renderSpareEnv('sum', '/var/plumber/other/library/g-0123456789abcdef', []), /R library/);
  });

  test("a worker's own file names its release's R library generation, or none, before the user's env (whose R_LIBS wins)", () => {
    const generation = '/var/plumber/sum/library/g-0123456789abcdef';
    assert.equal(renderInstanceEnv(RELEASE_SUM, { R_LIBS: '/mine' }, generation), `PLUMB_RELEASE_DIR=${RELEASE_SUM}\nR_LIBS=${generation}\nR_LIBS="/mine"\n`);
    assert.equal(renderInstanceEnv(RELEASE_SUM, {}, null), `PLUMB_RELEASE_DIR=${RELEASE_SUM}\nR_LIBS=\n`);
    assert.equal(
      renderInstanceEnv(RELEASE_SUM, { A: '1', TOKEN: 'from --env' }, null, { TOKEN: 's' }),
      `PLUMB_RELEASE_DIR=${RELEASE_SUM}\nR_LIBS=\nA="1"\n# plumb secrets (not --env):\nTOKEN="s"\n`,
      'secrets come after a mark, and a secret replaces the --env of its name',
    );
    for (const bad of ['/var/plumber/other/library/g-0123456789abcdef', '/var/plumber/sum/library', '/var/plumber/sum/library/g-0123456789abcdef/..', `${generation}\nX=1`]) {
      refused(() => renderInstanceEnv(RELEASE_SUM, {}, bad), /R library/);
    }
  });


  test('user env: every value double-quoted, escaped as systemd\'s parser reads it, keys sorted', () => {
    const env = Object.fromEntries(envCases.map(([name, value]) => [name.toUpperCase(), value]));
    assert.equal(renderUserEnv(env), `${envCases.map(([, , line]) => line).sort().join('\n')}\n`);
    assert.equal(renderUserEnv({}), '');
  });

  test('user env: refuses what the rules or systemd refuse', () => {
    for (const key of ['PLUMB_X', '1A', 'A-B', 'A B', '', 'A=B']) refused(() => renderUserEnv({ [key]: 'v' }), /environment variable name/);
    for (const value of refusedEnvValues) refused(() => renderUserEnv({ A: value }), /^refusing to render the value of A: .*newline or NUL$/);
    assert.throws(() => renderUserEnv({ A: 'hunter2\n' }), (error: Error) => !error.message.includes('hunter2'), 'a value may be a secret: never in a message');
    // systemd drops a line whose value is not valid UTF-8 or holds a noncharacter.
    for (const value of ['\uD800', 'a\uDC00b', '\uFDD0', '\uFFFE', '\u{10FFFF}']) refused(() => renderUserEnv({ A: value }), /value of A: it is not text systemd accepts$/);
  });
});

describe('the R runner', () => {
  test('starts the API as plumber would: plumber attached, plumb(dir =), the release as working directory, docs at plumber\'s default, loopback only', () => {
    const lines = RUNNER_R.split('\n');
    const at = (line: string) => {
      const i = lines.indexOf(line);
      assert.notEqual(i, -1, `${line} in\n${RUNNER_R}`);
      return i;
    };
    assert.ok(at('setwd(release)') < at('pr <- plumber::plumb(dir = release)'));
    assert.ok(at('library(plumber)') < at('pr <- plumber::plumb(dir = release)'));
    assert.ok(at('message("plumb: serving ", release, " on 127.0.0.1:", port)') < at('plumber::pr_run(pr, host = "127.0.0.1", port = as.integer(port))'));
    assert.doesNotMatch(RUNNER_R, /docs\s*=/, 'plumber 1.3 turns docs on itself; passing docs= would override the API\'s own pr_set_docs()');
    assert.match(RUNNER_R, /quit\(save = "no", status = 2\)/);
  });
});

/**
 * An overlay of the cached droplet image, kept between commands so a suite installs packages
 * into it once; the cache itself is never written (the overlay's upper layer is a temp dir, the
 * apt archive is bound read-only). Real root in private mount, network and pid namespaces: dpkg
 * and nginx chown to www-data, which a one-uid user namespace cannot map; the network namespace
 * keeps port 80 private, and everything started inside dies with the command.
 */
class ImageOverlay {
  private constructor(private readonly dir: string) {}

  static async create(): Promise<ImageOverlay> {
    const dir = await mkdtemp(path.join(tmpdir(), 'plumb-render-'));
    for (const sub of ['upper', 'work', 'root']) await mkdir(path.join(dir, sub));
    return new ImageOverlay(dir);
  }

  async run(command: string[], files: Record<string, string> = {}, timeout = 120_000) {
    const inDir = path.join(this.dir, 'in');
    await rm(inDir, { recursive: true, force: true });
    await mkdir(inDir);
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(inDir, name)), { recursive: true });
      await writeFile(path.join(inDir, name), content);
    }
    const script = [
      ...IMAGE_OVERLAY_PRELUDE,
      'mkdir -p "$dir/root/debs"',
      'if [ -d "$archive" ]; then mount --bind -o ro "$archive" "$dir/root/debs"; fi',
      'cp -r "$dir/in/." "$dir/root/tmp/"',
      'exec chroot "$dir/root" "$@"',
    ].join('\n');
    const result = await execa('unshare', ['--mount', '--net', '--pid', '--fork', '--kill-child', 'sh', '-c', script, 'sh', this.dir, rootfsDir(), aptArchiveDir(), ...command], { reject: false, timeout });
    return { code: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

const imageSkip = process.getuid?.() !== 0 ? 'needs root (overlay and namespaces)' : !rootfsReady() ? 'the lab root filesystem is not built (npm run setup)' : false;

describe('in the Debian 13 droplet image: systemd 257 reads what we render', { skip: imageSkip }, () => {
  let image: ImageOverlay;
  before(async () => {
    image = await ImageOverlay.create();
  });
  after(async () => image?.dispose());

  test('systemd-analyze verify accepts the unit as rendered, without a single warning', async () => {
    // R, nft and node are not in the image: stand-ins at ExecStart's paths let verify check the units unchanged.
    // A 40-character name: its user (cut, hashed) must pass systemd's strict user name rule too.
    const long = 'a'.repeat(40);
    const files = {
      'plumber-sum@.service': renderApiUnit('sum'),
      'plumber-hello-world@.service': renderApiUnit('hello-world'),
      [`plumber-${long}@.service`]: renderApiUnit(long),
      'plumb-routing.service': renderRoutingUnit('/var/lib/plumb/nat.nft', ['/usr/bin/node', '/opt/plumb-agent/current/bundle/plumb-agent.mjs']),
      'plumb-isolation.service': renderIsolationUnit('/var/lib/plumb/nat.nft'),
      'plumb-isolation.conf': ISOLATION_DROP_IN,
    };
    const script = [
      'set -e',
      'for cmd in /usr/bin/Rscript /usr/sbin/nft /usr/bin/node; do test -x $cmd || { printf "#!/bin/sh\\nexit 0\\n" > $cmd; chmod +x $cmd; }; done',
      'mkdir -p /opt/plumb-agent/current/bundle && touch /opt/plumb-agent/current/bundle/plumb-agent.mjs',
      'cp /tmp/plumber-*@.service /tmp/plumb-routing.service /tmp/plumb-isolation.service /etc/systemd/system/',
      'mkdir -p /etc/systemd/system/plumber-.service.d && cp /tmp/plumb-isolation.conf /etc/systemd/system/plumber-.service.d/',
      'systemd-analyze --version | head -n 1',
      `systemd-analyze verify plumber-sum@9000.service plumber-hello-world@9001.service plumber-${long}@9002.service plumb-routing.service plumb-isolation.service`,
      'echo verified',
    ].join('\n');
    const result = await image.run(['sh', '-c', script], files);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^systemd 257\b/);
    assert.match(result.stdout, /verified/);
    assert.equal(result.stderr, '', 'verify printed warnings');
  });

  test("user env files round-trip through systemd's own env-file parser", async () => {
    // No manager runs here, so the parser is reached through systemd-environment-d-generator:
    // same tokenizer as EnvironmentFile=, but it then expands $VARs (environment.d does, an
    // EnvironmentFile= does not) and refuses empty values, so those two cases are left out here.
    // test/e2e/user-behaviour.test.ts sends every case, those two included, through a real
    // deploy's EnvironmentFile= and reads them back from R.
    const cases = envCases.filter(([name]) => name !== 'dollar' && name !== 'empty');
    const env = Object.fromEntries(cases.map(([name, value]) => [`P_TEST_${name.toUpperCase()}`, value]));
    const script = 'mkdir -p /tmp/cfg/environment.d && cp /tmp/user.env /tmp/cfg/environment.d/50-plumb.conf && env -i XDG_CONFIG_HOME=/tmp/cfg /usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator';
    const result = await image.run(['sh', '-c', script], { 'user.env': renderUserEnv(env) });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, '');
    // The generator prints KEY=VALUE, double-quoted when needed with \ " ` $ backslashed and
    // control characters C-escaped (systemd's shell_maybe_quote()).
    const cEscapes: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
    const unquote = (raw: string) =>
      raw.startsWith('"') ? raw.slice(1, -1).replace(/\\([0-7]{3}|.)/g, (_, e: string) => (e.length === 3 ? String.fromCharCode(parseInt(e, 8)) : (cEscapes[e] ?? e))) : raw;
    const parsed = new Map(
      result.stdout
        .split('\n')
        .map((line) => /^(P_TEST_\w+)=(.*)$/.exec(line))
        .filter((m) => m !== null)
        .map(([, key = '', raw = '']) => [key, unquote(raw)]),
    );
    assert.deepEqual(Object.fromEntries(parsed), env);
  });
});

/**
 * The .debs Debian says `roots` need, from the lab's shared apt archive (dependencies not in it
 * are in the image already); null when a root is not in the archive yet.
 */
async function debsFor(roots: string[]): Promise<string[] | null> {
  const archive = aptArchiveDir();
  const files = (await readdir(archive).catch(() => [])).filter((f) => f.endsWith('.deb'));
  const names = (field = '') => field.split(',').map((alt) => alt.split('|').map((d) => d.trim().split(/[\s:(]/)[0] ?? '')).filter((alt) => alt[0]);
  const packages = new Map<string, { file: string; depends: string[][] }>();
  for (const file of files) {
    const { stdout } = await execa('dpkg-deb', ['-f', path.join(archive, file), 'Package', 'Provides', 'Pre-Depends', 'Depends']);
    const fields = Object.fromEntries(stdout.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
    const entry = { file: `/debs/${file}`, depends: [...names(fields['Pre-Depends']), ...names(fields['Depends'])] };
    for (const [name] of [[fields['Package']?.trim() ?? ''], ...names(fields['Provides'])]) if (name && !packages.has(name)) packages.set(name, entry);
  }
  if (!roots.every((r) => packages.has(r))) return null;
  const wanted = new Set<string>();
  const queue = roots.map((r) => [r]);
  for (let alternatives = queue.shift(); alternatives; alternatives = queue.shift()) {
    const entry = alternatives.map((a) => packages.get(a)).find((e) => e);
    if (!entry || wanted.has(entry.file)) continue;
    wanted.add(entry.file);
    queue.push(...entry.depends);
  }
  return [...wanted].sort();
}

const debs = imageSkip === false ? await debsFor(['r-base-core', 'r-cran-plumber', 'nginx', 'nftables']) : null;

describe('in the droplet image with nginx 1.26 and R 4.5 + plumber 1.3 installed from the lab apt archive', { skip: imageSkip || (debs ? false : 'no r-base-core, r-cran-plumber, nginx and nftables in the lab apt archive yet (a lab droplet fills it)') }, () => {
  let image: ImageOverlay;
  before(async () => {
    image = await ImageOverlay.create();
    // Nothing may start a service while dpkg configures packages: policy-rc.d says no.
    const install = `printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && dpkg --force-unsafe-io -i "$@" > /tmp/dpkg.log 2>&1 || { tail -n 30 /tmp/dpkg.log; exit 1; }`;
    const result = await image.run(['sh', '-c', install, 'sh', ...(debs ?? [])], {}, 300_000);
    assert.equal(result.code, 0, `dpkg -i failed:\n${result.stdout}${result.stderr}`);
  });
  after(async () => image?.dispose());

  test('nginx -t accepts every shape of the file under Debian\'s own nginx.conf', async () => {
    const models: Record<string, NginxModel> = {
      'empty.conf': { apis: [], forward: null },
      'two-forward.conf': twoApis,
      'two.conf': { ...twoApis, forward: null },
      'idle.conf': { apis: [{ name: 'idle', path: '/idle', frontPort: 7006, instances: [] }, ...twoApis.apis], forward: 'idle' },
      'nested.conf': { apis: [{ name: 'a_b', path: '/a', frontPort: 7007, instances: [{ port: 9000 }] }, { name: 'a-c', path: '/a/c.d~e', frontPort: 7008, instances: [{ port: 9999 }] }], forward: 'a-c' },
    };
    const files = Object.fromEntries(Object.entries(models).map(([name, model]) => [name, renderNginx(model)]));
    const script = [
      'rm -f /etc/nginx/sites-enabled/default',
      `for f in ${Object.keys(files).join(' ')}; do cp /tmp/$f /etc/nginx/conf.d/plumb.conf; nginx -t -q || { echo "refused: $f"; exit 1; }; echo "ok: $f"; done`,
    ].join('\n');
    const result = await image.run(['sh', '-c', script], files);
    assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
    assert.equal(result.stdout.trim().split('\n').length, Object.keys(files).length, result.stdout);
  });

  test('workers run by the runner answer through nginx and the nftables map: prefix stripped, docs and openapi.json behind the prefix, entrypoint.R first, forward, redirects kept under the prefix', async () => {
    const served: NginxModel = { apis: [{ name: 'sum', path: '/sum', frontPort: 7009, instances: [{ port: 9000 }] }, { name: 'hello-world', path: '/api/hello', frontPort: 7010, instances: [{ port: 9001 }] }], forward: 'sum' };
    const files = {
      'run-api.R': RUNNER_R,
      'plumb.conf': renderNginx(served),
      'plumb.nft': renderNat(served, new Map()),
      // Uses %>% without library(plumber), and a data file by relative path.
      'sum/plumber.R': '#* @get /add\nfunction(a, b) as.numeric(a) + as.numeric(b)\n\n#* @get /greeting\nfunction() readLines("greeting.txt") %>% paste(collapse = " ")\n\n#* @get /go\nfunction(res) {\n  res$status <- 302\n  res$setHeader("Location", "/greeting")\n  ""\n}\n' +
        // An API that prefixes its own redirects, relative and absolute: left as they are.
        '\n#* @get /own\nfunction(res) {\n  res$status <- 302\n  res$setHeader("Location", "/sum/greeting?x=1")\n  ""\n}\n' +
        '\n#* @get /own-absolute\nfunction(req, res) {\n  res$status <- 302\n  res$setHeader("Location", paste0("http://", req$HTTP_HOST, "/sum/greeting"))\n  ""\n}\n' +
        '\n#* @get /sumthing\nfunction(res) {\n  res$status <- 302\n  res$setHeader("Location", "/sumthing-else")\n  ""\n}\n',
      'sum/greeting.txt': 'hello from\na data file\n',
      'hello/entrypoint.R': 'pr() %>% pr_get("/hello", function() list(from = "entrypoint.R"))\n',
      'hello/plumber.R': '#* @get /hello\nfunction() list(from = "plumber.R")\n',
    };
    const get = (url: string, ...headers: string[]) =>
      `printf '%s ' '${url}'; curl -s -o /tmp/body -w '%{http_code} %header{location} ' ${headers.map((h) => `-H '${h}' `).join('')}'http://127.0.0.1${url}'; head -c 2000 /tmp/body | base64 -w 0; echo`;
    const script = [
      'set -e',
      'ip link set lo up',
      'mkdir -p /usr/lib/plumb /var/plumber/sum/releases /var/plumber/hello-world/releases',
      'cp /tmp/run-api.R /usr/lib/plumb/run-api.R',
      `cp -r /tmp/sum ${RELEASE_SUM}`,
      `cp -r /tmp/hello ${RELEASE_HELLO}`,
      'rm -f /etc/nginx/sites-enabled/default',
      'cp /tmp/plumb.conf /etc/nginx/conf.d/plumb.conf',
      'nft -f /tmp/plumb.nft',
      'nginx',
      `cd / && PLUMB_RELEASE_DIR=${RELEASE_SUM} PLUMB_PORT=9000 Rscript --no-save --no-restore /usr/lib/plumb/run-api.R 2> /tmp/sum.log &`,
      `cd / && PLUMB_RELEASE_DIR=${RELEASE_HELLO} PLUMB_PORT=9001 Rscript --no-save --no-restore /usr/lib/plumb/run-api.R 2> /tmp/hello.log &`,
      'for port in 9000 9001; do i=0; until curl -s -o /dev/null http://127.0.0.1:$port/; do i=$((i+1)); [ $i -lt 300 ] || { cat /tmp/*.log; exit 1; }; sleep 0.1; done; done',
      get('/sum/add?a=1&b=2'),
      get('/sum/greeting'),
      get('/sum?a=1'),
      get('/sum/go'),
      get('/sum/own'),
      get('/sum/own-absolute'),
      get('/sum/sumthing'),
      get('/sum/__docs__/'),
      get('/sum/openapi.json', 'Host: droplet.example', 'Referer: http://droplet.example/sum/__docs__/'),
      get('/api/hello/hello'),
      get('/add?a=2&b=3'),
      'echo "listening: $(ss -Hltn | awk \'{print $4}\' | sort | tr \'\\n\' \' \')"',
      'echo "log: $(grep "^plumb:" /tmp/sum.log)"',
    ].join('\n');
    const result = await image.run(['sh', '-c', script], files);
    assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
    const answers = new Map(
      result.stdout
        .split('\n')
        .filter((l) => l.startsWith('/'))
        .map((l) => {
          const [url = '', status = '', location = '', body = ''] = l.split(' ');
          return [url, { status: Number(status), location, body: Buffer.from(body, 'base64').toString() }];
        }),
    );
    const answer = (url: string) => answers.get(url) ?? assert.fail(`no answer for ${url} in\n${result.stdout}`);
    assert.deepEqual(answer('/sum/add?a=1&b=2'), { status: 200, location: '', body: '[3]' });
    assert.deepEqual(answer('/sum/greeting'), { status: 200, location: '', body: '["hello from a data file"]' });
    assert.deepEqual({ ...answer('/sum?a=1'), body: '' }, { status: 301, location: '/sum/?a=1', body: '' });
    assert.deepEqual({ ...answer('/sum/go'), body: '' }, { status: 302, location: '/sum/greeting', body: '' }, "the API's own redirect stays under its prefix");
    assert.deepEqual({ ...answer('/sum/own'), body: '' }, { status: 302, location: '/sum/greeting?x=1', body: '' }, 'a Location already under the prefix is not prefixed twice');
    assert.deepEqual({ ...answer('/sum/own-absolute'), body: '' }, { status: 302, location: '/sum/greeting', body: '' }, 'nor an absolute one for this host');
    assert.deepEqual({ ...answer('/sum/sumthing'), body: '' }, { status: 302, location: '/sum/sumthing-else', body: '' }, 'a path that only begins like the prefix is prefixed');
    const docs = answer('/sum/__docs__/');
    assert.equal(docs.status, 200);
    assert.match(docs.body, /swagger/i);
    const spec = answer('/sum/openapi.json');
    assert.equal(spec.status, 200);
    const openapi = JSON.parse(spec.body) as { servers: { url: string }[]; paths: Record<string, unknown> };
    assert.deepEqual(Object.keys(openapi.paths).sort(), ['/add', '/go', '/greeting', '/own', '/own-absolute', '/sumthing']);
    assert.deepEqual(openapi.servers, [{ url: 'http://droplet.example/sum/' }], "Swagger's try-it-out goes through the prefix");
    assert.deepEqual(answer('/api/hello/hello'), { status: 200, location: '', body: '{"from":["entrypoint.R"]}' });
    assert.deepEqual(answer('/add?a=2&b=3'), { status: 200, location: '', body: '[5]' });
    const listening = /^listening: (.*)$/m.exec(result.stdout)?.[1]?.trim().split(' ') ?? [];
    assert.ok(listening.includes('127.0.0.1:9000') && listening.includes('127.0.0.1:9001'), listening.join(' '));
    assert.ok(!listening.some((a) => /:900[01]$/.test(a) && !a.startsWith('127.0.0.1:')), `workers listen on loopback only: ${listening.join(' ')}`);
    assert.match(result.stdout, new RegExp(`^log: plumb: serving ${RELEASE_SUM} on 127\\.0\\.0\\.1:9000$`, 'm'));
  });

  test('the kernel keeps the APIs apart: each user reaches its own front and worker ports only, root and www-data reach all, no API user the metadata address', async () => {
    // Two API users and a worker each (a plain HTTP server: the filter looks at who connects, not
    // at what answers), one more worker port no state lists (a release still starting), and a
    // stand-in metadata service on a local address.
    const model = { apis: [{ name: 'a', path: '/a', frontPort: 7001, instances: [{ port: 9001 }] }, { name: 'b', path: '/b', frontPort: 7002, instances: [{ port: 9002 }] }] };
    const who = { root: 0, 'www-data': 33, a: 990, b: 991, other: 1000 };
    const targets = ['127.0.0.1:7001', '127.0.0.1:9001', '127.0.0.1:7002', '127.0.0.1:9002', '127.0.0.1:9003', '169.254.169.254:80'];
    const script = [
      'set -e',
      'ip link set lo up',
      'ip addr add 169.254.169.254/32 dev lo',
      'nft -f /tmp/plumb.nft',
      'for at in 127.0.0.1:9001 127.0.0.1:9002 127.0.0.1:9003 169.254.169.254:80; do python3 -m http.server ${at#*:} --bind ${at%:*} > /dev/null 2>&1 & done',
      `for at in ${targets.join(' ')}; do i=0; until curl -s -o /dev/null http://$at/; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done; done`,
      'set +e',
      ...Object.entries(who).flatMap(([name, uid]) => targets.map((at) => `echo "${name} ${at} $(setpriv --reuid ${uid} --regid ${uid} --clear-groups curl -s -m 5 -o /dev/null -w '%{http_code}' http://${at}/)"`)),
    ].join('\n');
    const result = await image.run(['sh', '-c', script], { 'plumb.nft': renderNat(model, new Map([['a', who.a], ['b', who.b]])) });
    assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
    const reached = result.stdout.split('\n').filter((l) => l.endsWith(' 200')).map((l) => l.replace(/ 200$/, ''));
    assert.deepEqual(reached, [
      ...targets.map((at) => `root ${at}`),
      ...targets.map((at) => `www-data ${at}`),
      'a 127.0.0.1:7001',
      'a 127.0.0.1:9001',
      'b 127.0.0.1:7002',
      'b 127.0.0.1:9002',
      'other 169.254.169.254:80',
    ], result.stdout);
  });

  test("the spare's request warm-up serves a 404, a 200 from a query string and a 200 from a JSON body through httpuv's own request functions", async () => {
    // The block as the runner runs it, each request's answer printed by a stand-in for its try().
    const script = [
      'library(plumber)',
      'Sys.setenv(PLUMB_PORT = "9000")',
      'pr <- pr() %>% pr_get("/", function(x = "0") list(x = as.numeric(x))) %>% pr_post("/", function(x = 0) list(x = x))',
      'try <- function(expr, silent) { answer <- expr; cat(answer$status, answer$body, "\\n") }',
      REQUEST_WARM_UP_R,
    ].join('\n');
    const result = await image.run(['Rscript', '/tmp/warm.R'], { 'warm.R': script });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.split('\n').map((l) => l.trim()), ['404 {"error":"404 - Resource Not Found"}', '200 {"x":[1]}', '200 {"x":[1]}']);
  });

  test('the runner fails loudly without its environment', async () => {
    const script = 'cp /tmp/run-api.R /tmp/r.R; env -i PATH=/usr/bin:/bin Rscript /tmp/r.R; echo "exit $?"; env -i PATH=/usr/bin:/bin PLUMB_RELEASE_DIR=/nowhere PLUMB_PORT=9000 Rscript /tmp/r.R; echo "exit $?"';
    const result = await image.run(['sh', '-c', script], { 'run-api.R': RUNNER_R });
    assert.equal(result.stdout, 'exit 2\nexit 2');
    assert.match(result.stderr, /plumb: PLUMB_RELEASE_DIR and PLUMB_PORT must be set/);
    assert.match(result.stderr, /plumb: release directory \/nowhere does not exist/);
  });
});
