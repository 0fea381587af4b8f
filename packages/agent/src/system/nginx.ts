import { readFile, rm, symlink } from 'node:fs/promises';
import { connect } from 'node:tls';
import { execa } from 'execa';
import { NGINX_RELOAD_POLL_MS, NGINX_RELOAD_WAIT_MS, PlumbError, SERVED_CERTIFICATE_PROBE_MS, pollUntil } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { layout } from './layout.js';
import { reload } from './systemd.js';

/**
 * Puts a new nginx config in place only if nginx accepts it: write, `nginx -t`, reload; on a
 * failed test the previous file is restored byte for byte and nginx is not touched.
 */
export async function applyNginx(config: string): Promise<'unchanged' | 'reloaded'> {
  const previous = await readFile(layout.nginxConf, 'utf8').catch(() => undefined);
  const hadDefaultSite = await readFile(layout.nginxDefaultSite).then(() => true, () => false);
  if (previous === config && !hadDefaultSite) return 'unchanged';
  await writeFileAtomic(layout.nginxConf, config, 0o644);
  // The agent's server is the default one on port 80; Debian's welcome site would clash with it.
  if (hadDefaultSite) await rm(layout.nginxDefaultSite, { force: true });
  const test = await execa('nginx', ['-t', '-q'], { reject: false, timeout: 60_000 });
  if (test.exitCode !== 0) {
    if (previous === undefined) await rm(layout.nginxConf, { force: true });
    else await writeFileAtomic(layout.nginxConf, previous, 0o644);
    if (hadDefaultSite) await symlink('/etc/nginx/sites-available/default', layout.nginxDefaultSite);
    throw new PlumbError('NGINX_CONFIG', `nginx refused the new configuration: ${test.stderr.trim().split('\n')[0] ?? ''}`, 'nothing was changed; this is a bug in plumb-agent, please report it');
  }
  await reloadNginx();
  return 'reloaded';
}

/**
 * `systemctl reload nginx` only signals the master. The new config serves once new workers run
 * and the old ones stopped accepting ("worker process is shutting down"); until then a request
 * may still see the old config, so the agent waits for that before it reports success. Also used
 * as it is after certbot wrote a certificate over the one nginx has loaded (its deploy hook only
 * signals nginx, and the config may not have changed).
 */
export async function reloadNginx(): Promise<void> {
  const master = Number((await readFile(layout.nginxPid, 'utf8').catch(() => '0')).trim());
  const before = new Set(await workers(master));
  await reload('nginx.service');
  await pollUntil(
    async () => {
      const now = await workers(master);
      const fresh = now.filter((pid) => !before.has(pid));
      const oldStillAccepting = await Promise.all(
        now.filter((pid) => before.has(pid)).map(async (pid) => {
          const title = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
          return title !== '' && !title.includes('shutting down');
        }),
      );
      return master === 0 || (fresh.length > 0 && !oldStillAccepting.some(Boolean)) ? true : undefined;
    },
    { timeoutMs: NGINX_RELOAD_WAIT_MS, intervalMs: NGINX_RELOAD_POLL_MS },
  );
}

/**
 * The SHA-256 fingerprint of the certificate nginx presents on loopback's port 443 for `domain`
 * (SNI), or undefined if no TLS answer came: what a client is served, which the files on disk
 * need not be (certbot wrote new ones and no reload followed).
 */
export function servedCertificate(domain: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: 443, servername: domain, rejectUnauthorized: false, timeout: SERVED_CERTIFICATE_PROBE_MS });
    const end = (fingerprint: string | undefined) => {
      socket.destroy();
      resolve(fingerprint);
    };
    socket.once('secureConnect', () => end(socket.getPeerX509Certificate()?.fingerprint256));
    socket.once('timeout', () => end(undefined));
    socket.once('error', () => end(undefined));
  });
}

async function workers(master: number): Promise<number[]> {
  if (master <= 0) return [];
  const children = await readFile(`/proc/${master}/task/${master}/children`, 'utf8').catch(() => '');
  return children.trim().split(/\s+/).filter(Boolean).map(Number);
}
