import type { FirewallResult, Request } from '@plumb/shared';
import { log } from '../log.js';
import * as ufw from '../system/ufw.js';
import { UFW_LOCK, type OpContext } from './context.js';

export type FirewallRequest = Extract<Request, { type: 'firewall' }>;

const SSH_RULE = '22/tcp';

/**
 * `plumb firewall open-ssh|close-ssh`: SSH in or out of ufw's allow rules. Only 22 changes; the
 * rules for 80, 443 and the agent's port are left as they are, so plumb keeps its way in.
 */
export async function firewall(req: FirewallRequest, ctx: OpContext): Promise<FirewallResult> {
  return ctx.locks.with(UFW_LOCK, async () => {
    ctx.progress(req.ssh === 'open' ? 'allowing SSH (22/tcp) in ufw' : 'taking SSH (22/tcp) out of ufw');
    const changed = req.ssh === 'open' ? await ufw.allow(SSH_RULE) : await ufw.deny(SSH_RULE);
    const allowed = await ufw.allowed();
    log.info('firewall', { ssh: req.ssh, changed, allowed: allowed.join(' ') });
    return { ssh: allowed.includes(SSH_RULE) ? 'open' : 'closed', changed, allowed };
  });
}
