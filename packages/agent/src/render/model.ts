import type { z } from 'zod';
import { PlumbError } from '@plumb/shared';

/**
 * What the renderers are given. The agent builds it from its state, whose names and paths
 * passed the shared rules on the way in; the renderers check them again, because a name that
 * slipped through would become a broken (or hostile) nginx or systemd file.
 */

/** One R worker: the unit `plumber-NAME@PORT`. */
export interface ApiInstance {
  port: number;
}

/**
 * An API as nginx and the nftables map serve it: nginx proxies to 127.0.0.1:`frontPort`, and
 * each new connection there goes on to one of `instances`, the live workers.
 */
export interface RenderedApi {
  name: string;
  path: string;
  frontPort: number;
  instances: ApiInstance[];
}

/** A certificate certbot keeps as lineage `name`, served over HTTPS for `domains`. */
export interface RenderedCertificate {
  name: string;
  domains: string[];
}

export interface NginxModel {
  apis: RenderedApi[];
  /** The name of the API served at `/`, or null. */
  forward: string | null;
  /** With certificates, each one's domains get an HTTPS server and HTTP redirects there. */
  certificates?: RenderedCertificate[];
  /** false while another site (plumber's old do_provision one, being imported) is port 80's default server; true when absent. */
  defaultServer?: boolean;
}

/** Where certbot keeps a lineage's current files: links it switches to the new ones on renewal. */
export function certificateFiles(name: string) {
  const dir = `/etc/letsencrypt/live/${name}`;
  return { dir, cert: `${dir}/cert.pem`, fullchain: `${dir}/fullchain.pem`, privkey: `${dir}/privkey.pem` };
}

/**
 * A renderer was handed something the rules refuse. Bad user input is refused before it reaches
 * state, so this is a bug in the agent; nothing is written.
 */
export function renderRefused(message: string): PlumbError {
  return new PlumbError('RENDER_REFUSED', `refusing to render ${message}`, 'nothing was changed; this is a bug in plumb-agent, please report it');
}

/** `value` if the shared rule accepts it; otherwise the renderer stops. */
export function checked(rule: z.ZodType<string>, value: string, what: string): string {
  const result = rule.safeParse(value);
  if (!result.success) throw renderRefused(`${what} ${JSON.stringify(value)}: ${result.error.issues[0]?.message ?? 'invalid'}`);
  return value;
}
