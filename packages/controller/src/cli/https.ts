import type { Command } from '@commander-js/extra-typings';
import { collect, dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';
import type { HttpsOutcome } from '../commands/https.js';

export function text(r: HttpsOutcome): string {
  return [
    `HTTPS is on at ${r.droplet} for ${r.certificate.domains.join(', ')}: certificate ${r.certificate.name} ${r.outcome === 'issued' ? 'issued' : 'still valid, kept'}, expires ${r.certificate.expiresAt.slice(0, 10)} (renewed by certbot.timer)`,
    ...r.urls.map((u) => `  ${u}`),
    `  HTTP redirects to HTTPS for these domains${r.opened443 ? '; port 443 opened in the firewall' : ''}`,
  ].join('\n');
}

export function register(program: Command) {
  const command = outputFlags(program
    .command('https')
    .description("a Let's Encrypt certificate for the droplet; HTTPS for every API, HTTP redirected (renews by itself)")
    .option('-d, --domain <domain>', 'a domain pointing at the droplet (repeatable; the first names the certificate)', collect, [] as string[])
    .option('--email <email>', 'the ACME account address, where expiry notices go')
    .option('--agree-tos', "agree to the ACME server's terms of service (plumb shows where they are)")
    .option('--staging', "Let's Encrypt's staging server: untrusted test certificates, no production rate limits")
    .option('--force', 'renew the certificate even if it is still valid')
    .option('--skip-dns-check', 'ask for the certificate even if a domain does not seem to point at the droplet')
    .addOption(dropletFlag()))
    .action(({ domain, json, quiet, ...o }) => output({ json, quiet }, async (ctx) => (await import('../commands/https.js')).https({ ...o, domains: domain }, ctx), text));
  helpFooter(command, ['plumb https -d api.example.com --email me@example.com --agree-tos', 'plumb https -d api.example.com -d www.example.com --email me@example.com --agree-tos --staging'], ['PLUMB_ACME_SERVER', 'PLUMB_DNS_SERVER']);
}
