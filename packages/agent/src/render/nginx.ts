import { ApiName, DomainName, UrlPath, WORKER_PORT_FIRST, WORKER_PORT_LAST } from '@plumb/shared';
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

/** Idle connections each nginx worker keeps open to an API's workers. */
const UPSTREAM_KEEPALIVE = 16;

export function renderNginx(model: NginxModel): string {
  const apis = sortedApis(model.apis);
  const forward = model.forward === null ? null : forwardTarget(apis, model.forward);
  const certificates = sortedCertificates(model.certificates ?? []);
  const locations = [...apis.flatMap(apiLocations), '', ...rootLocation(forward)];
  const lines = [
    '# Written by plumb-agent from its state (/var/lib/plumb/state.json); edits here are overwritten.',
    '# Change what is served with plumb (deploy, remove, forward); `plumb status` shows it.',
    '',
    '# Keepalive to the APIs for plain requests; WebSocket upgrades are passed through.',
    'map $http_upgrade $plumb_connection {',
    '    default upgrade;',
    "    ''      '';",
    '}',
    ...apis.filter(running).flatMap(upstream),
    '',
    'server {',
    '    listen 80 default_server;',
    '    listen [::]:80 default_server;',
    '    server_name _;',
    '    client_max_body_size 64m;',
    '    server_tokens off;',
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
    '    ssl_session_cache shared:plumb_tls:10m;',
    '    ssl_session_timeout 1d;',
    '    client_max_body_size 64m;',
    '    server_tokens off;',
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

function sortedApis(apis: RenderedApi[]): RenderedApi[] {
  const names = new Set<string>();
  const paths = new Set<string>();
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
    return { name: api.name, path: api.path, instances: ports.map((port) => ({ port })) };
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
  return [
    '',
    `upstream ${upstreamName(api)} {`,
    // 127.0.0.1, never localhost: as ::1 and 127.0.0.1 it would be two servers, both marked
    // failed for 10 s after one refused connection. max_fails=0: a restarting worker is retried.
    ...api.instances.map((i) => `    server 127.0.0.1:${i.port} max_fails=0;`),
    `    keepalive ${UPSTREAM_KEEPALIVE};`,
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
    ...(running(api) ? proxy(`http://${upstreamName(api)}/`, api.path) : noWorker(api)),
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
    // A worker that is gone (restart, old release stopping) is skipped for the next one.
    '        proxy_next_upstream error timeout http_502;',
  ];
}

function noWorker(api: RenderedApi): string[] {
  return [
    '        default_type text/plain;',
    `        return 503 "plumb: API ${api.name} has no running worker.\\n";`,
  ];
}
