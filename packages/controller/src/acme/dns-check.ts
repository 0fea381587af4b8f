import { Resolver } from 'node:dns/promises';
import { DNS_CHECK_TIMEOUT_MS, PlumbError, ValidationError } from '@plumb/shared';

/**
 * Before asking for a certificate: does each domain point at the droplet? A domain that does not
 * is the most common reason a CA refuses, and this says so in plain words, before anything on
 * the droplet changes.
 */

/** PLUMB_DNS_SERVER=HOST[:PORT] when set (the lab's DNS), the system's resolvers otherwise. */
export function dnsResolver(env: NodeJS.ProcessEnv): Resolver {
  const resolver = new Resolver({ timeout: DNS_CHECK_TIMEOUT_MS, tries: 2 });
  const server = env['PLUMB_DNS_SERVER'];
  if (server) {
    try {
      resolver.setServers([server]);
    } catch {
      throw new ValidationError(`invalid PLUMB_DNS_SERVER "${server}": expected HOST or HOST:PORT, with HOST an IP address`);
    }
  }
  return resolver;
}

/** What is wrong with one domain for a droplet at `ipv4`, or undefined when it points there. */
export async function domainProblem(resolver: Resolver, domain: string, ipv4: string): Promise<string | undefined> {
  const lookup = async (kind: 'A' | 'AAAA'): Promise<string[] | string> => {
    try {
      return kind === 'A' ? await resolver.resolve4(domain) : await resolver.resolve6(domain);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      // No such name, or no record of this kind: an empty answer, not a failure.
      if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
      return `could not be looked up (${code || (err as Error).message})`;
    }
  };
  const [v4, v6] = await Promise.all([lookup('A'), lookup('AAAA')]);
  if (typeof v4 === 'string') return `${domain} ${v4}`;
  if (v4.length === 0) return `${domain} has no A record`;
  if (!v4.includes(ipv4)) return `${domain} resolves to ${v4.join(', ')}`;
  if (v4.length > 1) return `${domain} resolves to ${v4.join(', ')}, not only to the droplet`;
  // A CA validates over IPv6 when there is an AAAA record; plumb's droplets are reached over IPv4.
  if (typeof v6 !== 'string' && v6.length > 0) return `${domain} also has an AAAA record (${v6.join(', ')}), which the CA would try first`;
  return undefined;
}

/** Throws one line naming every domain that does not point at the droplet, and what to do. */
export async function checkDomainsPointAt(domains: string[], droplet: { name: string; ipv4: string }, env: NodeJS.ProcessEnv): Promise<void> {
  const resolver = dnsResolver(env);
  const problems = (await Promise.all(domains.map((d) => domainProblem(resolver, d, droplet.ipv4)))).filter((p) => p !== undefined);
  if (problems.length === 0) return;
  const via = env['PLUMB_DNS_SERVER'] ? ` (asked ${env['PLUMB_DNS_SERVER']})` : '';
  throw new PlumbError(
    'DNS_MISMATCH',
    `not pointing at droplet ${droplet.name} (${droplet.ipv4})${via}: ${problems.join('; ')}`,
    `give each domain an A record with the address ${droplet.ipv4} (and no AAAA record) at its DNS provider, wait until it resolves, then run plumb https again; nothing was changed`,
  );
}
