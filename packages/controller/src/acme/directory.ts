import https from 'node:https';
import { ACME_DIRECTORY_MAX_BYTES, ACME_DIRECTORY_TIMEOUT_MS, HttpUrl, PlumbError, ValidationError } from '@plumb/shared';

/** Let's Encrypt's ACME directories; `--staging` issues untrusted test certificates without production's rate limits. */
export const LETS_ENCRYPT = 'https://acme-v02.api.letsencrypt.org/directory';
export const LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory';

/**
 * The ACME server is configuration: Let's Encrypt, its staging server with --staging, or
 * PLUMB_ACME_SERVER (another CA, or the lab's pebble).
 */
export function acmeServer(opts: { staging?: boolean }, env: NodeJS.ProcessEnv): string {
  const configured = env['PLUMB_ACME_SERVER'];
  if (configured === undefined || configured === '') return opts.staging ? LETS_ENCRYPT_STAGING : LETS_ENCRYPT;
  if (opts.staging) throw new ValidationError('--staging and PLUMB_ACME_SERVER both choose the ACME server', 'use one of them');
  const parsed = HttpUrl.safeParse(configured);
  if (!parsed.success) throw new ValidationError(`invalid PLUMB_ACME_SERVER "${configured}": ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/**
 * The terms of service the ACME server asks its users to agree to (its directory's
 * `meta.termsOfService`), fetched from here: the user reads them before passing --agree-tos.
 */
export async function termsOfService(directoryUrl: string): Promise<string | undefined> {
  const body = await getJson(directoryUrl);
  const terms = (body as { meta?: { termsOfService?: unknown } } | null)?.meta?.termsOfService;
  // Shown to the user as it is (pebble's is a data: URL): printable, no spaces, bounded.
  return typeof terms === 'string' && /^[\x21-\x7e]{1,2048}$/.test(terms) ? terms : undefined;
}

function getJson(url: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new PlumbError('ACME_DIRECTORY', `cannot read the ACME directory ${url}: ${why}`));
    const req = https.get(url, { timeout: ACME_DIRECTORY_TIMEOUT_MS, headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return fail(`HTTP ${res.statusCode}`);
      }
      let size = 0;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > ACME_DIRECTORY_MAX_BYTES) {
          res.destroy();
          fail(`more than ${ACME_DIRECTORY_MAX_BYTES} bytes`);
        } else chunks.push(chunk);
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          fail('not JSON');
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${ACME_DIRECTORY_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
  });
}
