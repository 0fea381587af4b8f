import type { AlertsResult, Hello } from '@plumb/shared';
import { log } from '../log.js';
import { SHARED, type OpContext } from '../ops/context.js';
import { alertText, origin, post } from './webhook.js';

/**
 * `plumb alerts`: where the agent POSTs its alerts (kept in its state), or nowhere. A new URL gets
 * a test POST right away, so the person setting it learns whether it is reachable from the droplet.
 */
export async function setAlerts(webhook: string | null, ctx: OpContext, hello: Hello): Promise<AlertsResult> {
  const previous = ctx.state.get().alertWebhook;
  await ctx.locks.with(SHARED, () => ctx.state.update((s) => ({ ...s, alertWebhook: webhook })));
  log.info(webhook ? 'alerts on' : 'alerts off', { to: webhook ? origin(webhook) : undefined });
  if (webhook === null) return { webhook, previous, test: null };
  const droplet = { uuid: hello.dropletUuid, hostname: hello.hostname };
  const test = await post(webhook, { source: 'plumb-agent', alert: 'test', droplet, text: alertText('test', null, droplet), event: null });
  return { webhook, previous, test };
}
