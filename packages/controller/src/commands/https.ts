import { DomainName, Email, HTTPS_MAX_DOMAINS, HttpsResult, PlumbError, ValidationError } from '@plumb/shared';
import { acmeServer, termsOfService } from '../acme/directory.js';
import { withAgent } from '../agent/connect.js';
import { agentProgress, type Context } from '../context.js';
import { checkDomainsPointAt } from '../acme/dns-check.js';

export interface HttpsOptions {
  domains: string[];
  email?: string;
  agreeTos?: boolean;
  /** Let's Encrypt's staging server (test certificates). */
  staging?: boolean;
  /** Renew the certificate even if it is still valid. */
  force?: boolean;
  /** Ask for the certificate even if a domain does not seem to point at the droplet. */
  skipDnsCheck?: boolean;
  droplet?: string;
}

export interface HttpsOutcome extends HttpsResult {
  droplet: string;
  server: string;
  /** https://DOMAIN/ for each domain of the certificate. */
  urls: string[];
}

/** Domains and email as the rules take them (domains lower-cased, each once); one line naming what is wrong. */
export function checkHttpsOptions(opts: HttpsOptions): { domains: string[]; email: string } {
  if (opts.domains.length === 0) throw new ValidationError('at least one --domain is needed, e.g. --domain api.example.com');
  const domains = [...new Set(opts.domains.map((d) => d.toLowerCase()))];
  for (const domain of domains) {
    const parsed = DomainName.safeParse(domain);
    if (!parsed.success) throw new ValidationError(`invalid domain "${domain}": ${parsed.error.issues[0]?.message}`);
  }
  if (domains.length > HTTPS_MAX_DOMAINS) throw new ValidationError(`${domains.length} domains: one certificate names at most ${HTTPS_MAX_DOMAINS}`, `give at most ${HTTPS_MAX_DOMAINS} --domain`);
  if (opts.email === undefined) throw new ValidationError('--email is needed: the ACME account\'s address, where expiry notices go');
  const email = Email.safeParse(opts.email);
  if (!email.success) throw new ValidationError(`invalid email "${opts.email}": ${email.error.issues[0]?.message}`);
  return { domains, email: email.data };
}

/**
 * plumber's do_configure_https(): a certificate for the domains from the ACME server, HTTPS for
 * every API and the forward, HTTP redirected. Everything that can be refused here is, before
 * anything is sent to the droplet: input, agreement to the terms, DNS.
 */
export async function https(opts: HttpsOptions, ctx: Context): Promise<HttpsOutcome> {
  const { domains, email } = checkHttpsOptions(opts);
  const server = acmeServer(opts, ctx.env);
  if (!opts.agreeTos) {
    const terms = await termsOfService(server).catch(() => undefined);
    throw new PlumbError('TERMS_NOT_AGREED', `--agree-tos is needed: read the ACME server's terms of service at ${terms ?? server}, and agree to them with --agree-tos`);
  }
  const droplet = await ctx.droplets.find(opts.droplet);
  if (!opts.skipDnsCheck) {
    ctx.progress({ step: `checking that ${domains.join(', ')} point${domains.length === 1 ? 's' : ''} at ${droplet.ipv4}` });
    await checkDomainsPointAt(domains, droplet, ctx.env);
  }
  return withAgent(ctx, String(droplet.id), async ({ connection }) => {
    const result = HttpsResult.parse(
      await connection.request<unknown>(
        { type: 'https', domains, email, agreeTos: true, server, force: opts.force ?? false },
        { onProgress: agentProgress(ctx) },
      ),
    );
    ctx.progress({ step: 'done', done: true });
    return { ...result, droplet: droplet.name, server, urls: result.certificate.domains.map((d) => `https://${d}/`) };
  });
}
