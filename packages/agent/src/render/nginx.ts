import { ApiName, DomainName, DROPLET_HEALTH_PATH, NGINX_KEEPALIVE_REQUESTS, DROPLET_HEALTH_PORT, FRONT_PORT_FIRST, FRONT_PORT_LAST, UrlPath, WORKER_PORT_FIRST, WORKER_PORT_LAST } from '@plumb/shared';
import { certificateFiles, checked, renderRefused, type NginxModel, type RenderedApi, type RenderedCertificate } from './model.js';
import { layout } from '../system/layout.js';

/**
 * The whole of /etc/nginx/conf.d/plumb.conf (http context: Debian's nginx.conf includes
 * conf.d/*.conf inside `http {}`), rendered from the agent's state. The agent removes Debian's
 * default site, so this server is the default one on port 80.
 *
 * With HTTPS on, each certificate adds two servers for its domains: one on 443 with the same
 * locations, and one on 80 that redirects to it (except ACME challenges, which certbot's renewal
 * needs over HTTP). Requests by address, or for other names, stay on the default server: no
 * certificate can be valid for them.
 */

/**
 * Which workers serve is not in this file: each API's upstream is its stable front port, and the
 * agent's nftables map (render/nat.ts) sends each new connection there to a live worker. So a
 * deploy, rollback, scale or restart changes that map, never this file, and nginx is not reloaded
 * (a reload closes clients' idle keep-alive connections). nginx reloads only when paths, the
 * forward or certificates change.
 */

export function renderNginx(model: NginxModel): string {
  const apis = sortedApis(model.apis);
  const forward = model.forward === null ? null : forwardTarget(apis, model.forward);
  const certificates = sortedCertificates(model.certificates ?? []);
  const defaultServer = model.defaultServer === false ? '' : ' default_server';
  const locations = [...dropletHealthLocation, ...apis.flatMap(apiLocations), '', ...rootLocation(forward)];
  const lines = [
    '# Written by plumb-agent from its state (/var/lib/plumb/state.json); edits here are overwritten.',
    '# Change what is served with plumb (deploy, remove, forward); `plumb status` shows it.',
    '',
    '# WebSocket upgrades are passed through; plain requests ask for nothing special.',
    'map $http_upgrade $plumb_connection {',
    '    default upgrade;',
    "    ''      '';",
    '}',
    ...apis.filter(running).flatMap(upstream),
    ...apis.filter(running).flatMap(selfRedirectMap),
    '',
    'server {',
    `    listen 80${defaultServer};`,
    `    listen [::]:80${defaultServer};`,
    '    server_name _;',
    '    client_max_body_size 64m;',
    '    server_tokens off;',
    keepaliveRequests,
    // Behind a load balancer that terminates TLS an absolute redirect would say http://.
    '    absolute_redirect off;',
    '',
    ...acmeChallenges,
    ...locations,
    '}',
    ...certificates.flatMap((certificate, i) => httpsServers(certificate, i === 0, locations)),
  ];
  return `${lines.join('\n')}\n`;
}

/** HTTP/1.1 keep-alive and HTTP/2 alike (nginx >= 1.19.7); a switch never closes them either. */
const keepaliveRequests = `    keepalive_requests ${NGINX_KEEPALIVE_REQUESTS};`;

/** A load balancer's health check: 200 only while every API here answers (the agent judges; down agent = 502 = unhealthy). */
const dropletHealthLocation = [
  `    location = ${DROPLET_HEALTH_PATH} {`,
  `        proxy_pass http://127.0.0.1:${DROPLET_HEALTH_PORT};`,
  '        proxy_connect_timeout 2s;',
  '        proxy_read_timeout 5s;',
  '    }',
];

const acmeChallenges = [
  '    location ^~ /.well-known/acme-challenge/ {',
  `        root ${layout.acmeWebroot};`,
  '        default_type text/plain;',
  '    }',
];

/** The first certificate's server is the default on 443 (clients without SNI, other names). */
function httpsServers(certificate: RenderedCertificate, isDefault: boolean, locations: string[]): string[] {
  const files = certificateFiles(certificate.name);
  const names = certificate.domains.join(' ');
  const defaultServer = isDefault ? ' default_server' : '';
  return [
    '',
    `# HTTPS for ${certificate.domains.join(', ')}: certificate ${certificate.name}, renewed by certbot.timer (its deploy hook reloads nginx).`,
    'server {',
    '    listen 80;',
    '    listen [::]:80;',
    `    server_name ${names};`,
    '    server_tokens off;',
    '',
    ...acmeChallenges,
    '    location / {',
    '        return 301 https://$host$request_uri;',
    '    }',
    '}',
    '',
    'server {',
    `    listen 443 ssl${defaultServer};`,
    `    listen [::]:443 ssl${defaultServer};`,
    `    server_name ${names};`,
    `    ssl_certificate ${files.fullchain};`,
    `    ssl_certificate_key ${files.privkey};`,
    '    ssl_protocols TLSv1.2 TLSv1.3;',
    // One connection for all of a browser's requests; a switch of workers never closes it (no reload).
    '    http2 on;',
    '    ssl_session_cache shared:plumb_tls:10m;',
    '    ssl_session_timeout 1d;',
    '    client_max_body_size 64m;',
    '    server_tokens off;',
    keepaliveRequests,
    '    absolute_redirect off;',
    ...locations,
    '}',
  ];
}

/** Certificates by name; every name and domain passes the shared rule, and a domain belongs to one certificate. */
function sortedCertificates(certificates: RenderedCertificate[]): RenderedCertificate[] {
  const names = new Set<string>();
  const domains = new Set<string>();
  for (const certificate of certificates) {
    checked(DomainName, certificate.name, 'the certificate name');
    if (names.has(certificate.name)) throw renderRefused(`certificate ${certificate.name} twice`);
    names.add(certificate.name);
    if (certificate.domains.length === 0) throw renderRefused(`certificate ${certificate.name} for no domain`);
    for (const domain of certificate.domains) {
      checked(DomainName, domain, `a domain of certificate ${certificate.name}`);
      if (domains.has(domain)) throw renderRefused(`the domain ${domain} in two certificates`);
      domains.add(domain);
    }
  }
  return [...certificates].sort((a, b) => (a.name < b.name ? -1 : 1)).map((c) => ({ name: c.name, domains: [...c.domains] }));
}

/** Every API checked against the rules (names, paths, ports, no duplicates), sorted by path. Shared with render/nat.ts. */
export function sortedApis(apis: RenderedApi[]): RenderedApi[] {
  const names = new Set<string>();
  const paths = new Set<string>();
  const frontPorts = new Set<number>();
  const sorted = apis.map((api) => {
    checked(ApiName, api.name, 'the API name');
    checked(UrlPath, api.path, `the URL path of API ${api.name}`);
    if (names.has(api.name)) throw renderRefused(`API ${api.name} twice`);
    if (paths.has(api.path)) throw renderRefused(`two APIs at ${api.path}`);
    names.add(api.name);
    paths.add(api.path);
    const ports = api.instances.map((i) => i.port).sort((a, b) => a - b);
    for (const [n, port] of ports.entries()) {
      if (!Number.isInteger(port) || port < WORKER_PORT_FIRST || port > WORKER_PORT_LAST) throw renderRefused(`port ${port} of API ${api.name}: workers use ${WORKER_PORT_FIRST}-${WORKER_PORT_LAST}`);
      if (ports[n - 1] === port) throw renderRefused(`port ${port} twice in API ${api.name}`);
    }
    if (!Number.isInteger(api.frontPort) || api.frontPort < FRONT_PORT_FIRST || api.frontPort > FRONT_PORT_LAST) throw renderRefused(`front port ${api.frontPort} of API ${api.name}: APIs use ${FRONT_PORT_FIRST}-${FRONT_PORT_LAST}`);
    if (frontPorts.has(api.frontPort)) throw renderRefused(`front port ${api.frontPort} twice`);
    frontPorts.add(api.frontPort);
    return { name: api.name, path: api.path, frontPort: api.frontPort, instances: ports.map((port) => ({ port })) };
  });
  return sorted.sort((a, b) => (a.path < b.path ? -1 : 1));
}

function forwardTarget(apis: RenderedApi[], name: string): RenderedApi {
  const api = apis.find((a) => a.name === name);
  if (!api) throw renderRefused(`a forward to ${JSON.stringify(name)}, which is not a deployed API`);
  return api;
}

const running = (api: RenderedApi) => api.instances.length > 0;
const upstreamName = (api: RenderedApi) => `plumb_${api.name}`;

function upstream(api: RenderedApi): string[] {
  const server = `    server 127.0.0.1:${api.frontPort} max_fails=0;`;
  return [
    '',
    `upstream ${upstreamName(api)} {`,
    // 127.0.0.1, never localhost: as ::1 and 127.0.0.1 it would be two servers, both marked
    // failed for 10 s after one refused connection. max_fails=0: a restarting worker is retried.
    // Listed twice so that a connection refused by one worker (crashed, restarting) is tried
    // once more, which the nftables map sends to the next worker.
    server,
    server,
    // No `keepalive`: httpuv writes an answer in two writes without TCP_NODELAY, so on a reused
    // connection Nagle holds the second until nginx's delayed ACK (~40 ms per request, measured:
    // docs/benchmarks.md). A fresh loopback connection per request costs ~0.1 ms, and it is
    // what lets a switch take effect at once and an old worker be seen idle (drain). `quickack 1`
    // on the loopback routes removes that stall (measured), and `keepalive_time`/`keepalive_timeout`
    // of 1 s would bound how long a kept connection stays on an old worker; not rendered: what
    // is left over straight-to-R with 16 clients is nginx's own CPU (~0.33 ms a request) taken
    // from the core R or the client needs, which a kept connection only trims; and new requests
    // would keep reaching the old release for up to keepalive_time after a switch (a cached
    // connection stays DNATed to its worker), every drain waiting out nginx's idle ones. Nor is
    // `worker_processes 1` (Debian's `auto`, one per CPU, stays): it was better on the lab's
    // 2-core host, where a second nginx worker only competes with R, but a droplet with more
    // cores than R workers gains from more nginx workers (docs/benchmarks.md).
    '}',
  ];
}

function apiLocations(api: RenderedApi): string[] {
  return [
    '',
    `    # API ${api.name}: ${api.path}/X reaches it as /X (so ${api.path}/__docs__/ is plumber's /__docs__/).`,
    `    location = ${api.path} {`,
    `        return 301 ${api.path}/$is_args$args;`,
    '    }',
    `    location ${api.path}/ {`,
    ...(running(api) ? [...proxy(`http://${upstreamName(api)}/`, api.path), ...underPrefix(api)] : noWorker(api)),
    '    }',
  ];
}

function rootLocation(forward: RenderedApi | null): string[] {
  if (!forward) {
    return [
      '    location / {',
      '        default_type text/plain;',
      '        return 404 "plumb: no API is served at /. Deployed APIs are under their own paths.\\n";',
      '    }',
    ];
  }
  return [
    `    # Forward: / goes to API ${forward.name} unchanged (/add?a=1 reaches it as /add?a=1).`,
    '    location / {',
    ...(running(forward) ? proxy(`http://${upstreamName(forward)}`, '""') : noWorker(forward)),
    '    }',
  ];
}

function proxy(target: string, prefix: string): string[] {
  return [
    `        proxy_pass ${target};`,
    '        proxy_http_version 1.1;',
    '        proxy_set_header Host $host;',
    '        proxy_set_header X-Real-IP $remote_addr;',
    '        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    '        proxy_set_header X-Forwarded-Proto $scheme;',
    `        proxy_set_header X-Forwarded-Prefix ${prefix};`,
    '        proxy_set_header Upgrade $http_upgrade;',
    '        proxy_set_header Connection $plumb_connection;',
    '        proxy_read_timeout 300s;',
    // A worker that is gone (crashed, restarting) refuses the connection: the request is tried
    // once more, on the next worker. Only within its first second: a long request cut at the end
    // of a drain (or a crash mid-request) is reported as failed, not run a second time.
    '        proxy_next_upstream error timeout http_502;',
    '        proxy_next_upstream_timeout 1s;',
  ];
}

/**
 * plumber answers as if it were at `/`: a redirect to `/x/` (its trailing-slash rule, an API's own
 * `Location: /login`) would leave the API's prefix. These put such Locations back under it;
 * relative ones (`../__docs__/`) already resolve under it, and other hosts are left alone. An API
 * that knows its prefix (X-Forwarded-Prefix) and says `Location: /NAME/x` itself is left as it is:
 * nginx uses the first rule that matches, so those come first.
 */
function underPrefix(api: RenderedApi): string[] {
  const prefix = api.path;
  const already = `${escapeRegex(prefix)}(?:[/?].*)?`;
  return [
    `        proxy_redirect ~^(${already})$ $1;`,
    // A regex cannot name $host, and these match by prefix; selfRedirectMap says what replaces
    // `http://HOST${prefix}` (itself, or the root's `${prefix}x` put under the prefix).
    `        proxy_redirect http://$host${prefix} ${selfRedirectVariable(api)};`,
    `        proxy_redirect https://$host${prefix} ${selfRedirectVariable(api)};`,
    `        proxy_redirect http://$host/ ${prefix}/;`,
    `        proxy_redirect https://$host/ ${prefix}/;`,
    `        proxy_redirect / ${prefix}/;`,
  ];
}

const escapeRegex = (text: string) => text.replace(/[.]/g, '\\.');
/** By front port: API names may hold `-`, which ends an nginx variable name. */
const selfRedirectVariable = (api: RenderedApi) => `$plumb_self_redirect_${api.frontPort}`;

/**
 * An absolute Location on this host that starts with the API's path: `http://HOST/NAME`,
 * `/NAME?x` or `/NAME/x` is the API's own (already under its prefix, kept: the prefix replaces
 * itself); `http://HOST/NAMEx` is plumber's root-relative `/NAMEx` (put under the prefix). Read
 * when nginx rewrites the answer's Location, so $upstream_http_location is the worker's.
 */
function selfRedirectMap(api: RenderedApi): string[] {
  return [
    '',
    `map $upstream_http_location ${selfRedirectVariable(api)} {`,
    `    "~^https?://[^/]+${escapeRegex(api.path)}(?:[/?]|$)" ${api.path};`,
    `    default ${api.path}${api.path};`,
    '}',
  ];
}

function noWorker(api: RenderedApi): string[] {
  return [
    '        default_type text/plain;',
    `        return 503 "plumb: API ${api.name} has no running worker.\\n";`,
  ];
}
