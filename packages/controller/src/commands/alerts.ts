import { HttpUrl, ValidationError, type AlertsResult } from '@plumb/shared';
import type { Context } from '../context.js';
import { withAgent } from '../agent/connect.js';

export interface AlertsOptions {
  webhook?: string;
  off?: boolean;
  droplet?: string;
}

/**
 * Where the droplet's agent POSTs alerts (API down/up, repeated restarts, certificate expiry),
 * or `--off`. The agent keeps it in its state and tries the URL at once (`test`).
 */
export async function alerts(opts: AlertsOptions, ctx: Context): Promise<AlertsResult & { droplet: string }> {
  if ((opts.webhook === undefined) === (opts.off !== true)) {
    throw new ValidationError('say where alerts go with --webhook URL, or stop them with --off (one of the two)');
  }
  let webhook: string | null = null;
  if (opts.webhook !== undefined) {
    const parsed = HttpUrl.safeParse(opts.webhook);
    if (!parsed.success) throw new ValidationError(`invalid --webhook "${opts.webhook}": ${parsed.error.issues[0]?.message ?? 'not a URL'}`, 'an http:// or https:// URL the droplet can reach');
    webhook = parsed.data;
  }
  return withAgent(ctx, opts.droplet, async ({ droplet, connection }) => ({ droplet: droplet.name, ...(await connection.request<AlertsResult>({ type: 'alerts', webhook })) }));
}
