import { access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { FIRST_RENDER_POLL_MS, FIRST_RENDER_STALE_PID_MS, FIRST_RENDER_WAIT_MS, FRONT_PORT_FIRST, FRONT_PORT_LAST, MONITOR_INTERVAL_MS, PlumbError, pollUntil, type Clock, type ForwardResult, type UnforwardResult } from '@plumb/shared';
import { crashPoint } from '../crash-point.js';
import { renderNat } from '../render/nat.js';
import { renderNginx } from '../render/nginx.js';
import { events } from '../monitor/events.js';
import { log } from '../log.js';
import type { NginxModel } from '../render/model.js';
import type { AgentState } from '../state.js';
import { apiUids } from '../system/api-account.js';
import { layout } from '../system/layout.js';
import { applyNat, natLost } from '../system/nat.js';
import { applyNginx } from '../system/nginx.js';
import * as systemd from '../system/systemd.js';
import * as ufw from '../system/ufw.js';
import { SHARED, UFW_LOCK, type OpContext } from './context.js';
import { nginxModel } from './nginx-model.js';

/**
 * Changes the shared state and what serves together: the nftables map (which workers new
 * connections reach), then nginx (validated; reloaded only if its file changed, which a change of
 * workers never does), then the state file. If any fails, both go back to what the unchanged
 * state says, so they never disagree. Says what nginx did (https reloads only if it did not).
 */
export async function changeRouting(ctx: OpContext, change: (state: AgentState) => AgentState): Promise<'unchanged' | 'reloaded'> {
  return ctx.locks.with(SHARED, async () => {
    const candidate = change(ctx.state.get());
    try {
      const nginx = await applyRouting(candidate);
      crashPoint('routing-applied');
      await ctx.state.update(() => candidate);
      return nginx;
    } catch (err) {
      // A file nginx refused is already restored by applyNginx; this covers the rest.
      await applyRouting(ctx.state.get()).catch(() => undefined);
      throw err;
    }
  });
}

/** Makes the nftables table (routing and isolation) and nginx say what `state` says. */
export async function applyRouting(state: AgentState): Promise<'unchanged' | 'reloaded'> {
  const model = await servingModel(state);
  await applyNatOf(model);
  return applyNginx(renderNginx(model));
}

/** Makes nginx alone say what `state` says (the nftables table is not touched). */
export async function applyNginxOf(state: AgentState): Promise<'unchanged' | 'reloaded'> {
  return applyNginx(renderNginx(await servingModel(state)));
}

/** What nginx serves: an old do_provision() site still serving (adopt --import, until retire-legacy) keeps port 80's default. */
async function servingModel(state: AgentState): Promise<NginxModel> {
  return { ...nginxModel(state), defaultServer: !(await exists(layout.legacySite)) };
}

async function applyNatOf(model: NginxModel): Promise<void> {
  await applyNat(renderNat(model, await apiUids(model.apis.map((a) => a.name))));
}

/**
 * Puts back what serving needs when something took it away, looked at on each monitor tick under
 * the shared lock (so never in the middle of a switch): the nftables table (`nft flush ruleset`, a
 * firewall tool that rewrites the whole ruleset; without it every API answers 502) and plumb's
 * nginx config on a fresh droplet. Says what it put back. ufw's rules, which the same flush takes,
 * are restoreFirewallIfLost's: apart, so a slow `ufw reload` holds up neither this nor a switch.
 */
export async function restoreServingIfLost(ctx: Pick<OpContext, 'state' | 'locks'>): Promise<string[]> {
  return ctx.locks.with(SHARED, async () => {
    const restored: string[] = [];
    if (await natLost()) {
      await applyNatOf(nginxModel(ctx.state.get()));
      events.record({ kind: 'routing-restored', api: null, detail: "the agent's nftables table (API front ports to workers, the APIs kept apart on loopback and from the metadata address) was gone or changed; put back from the state" });
      restored.push('nftables table');
    }
    if (await renderIfNeverRendered(ctx)) restored.push("plumb's nginx config");
    return restored;
  });
}

/**
 * Puts ufw's rules back when ufw is enabled but its chains are gone from the kernel (`nft flush
 * ruleset` leaves every port open), under ufw's own lock only: `ufw reload` takes seconds (14 s
 * seen under load), and every deploy's switch waits for the shared lock.
 */
export async function restoreFirewallIfLost(ctx: Pick<OpContext, 'locks'>): Promise<string[]> {
  return ctx.locks.with(UFW_LOCK, async () => {
    if (!(await ufw.lost())) return [];
    await ufw.reload();
    events.record({ kind: 'firewall-restored', api: null, detail: "ufw is enabled but its rules were gone from the kernel (every port open); loaded again with `ufw reload`" });
    return ['ufw rules'];
  });
}

/**
 * Writes plumb's nginx config if nginx runs and never had it (a fresh droplet: nginx is installed
 * after the agent starts, and would serve Debian's welcome page until the first deploy). The
 * caller holds the shared lock. True when it wrote it.
 */
async function renderIfNeverRendered(ctx: Pick<OpContext, 'state'>): Promise<boolean> {
  if (!(await nginxNeverRendered())) return false;
  await applyRouting(ctx.state.get());
  return true;
}

/** True once plumb's nginx config is in place (and Debian's default site gone). */
async function nginxRendered(): Promise<boolean> {
  return (await exists(layout.nginxConf)) && !(await exists(layout.nginxDefaultSite));
}

/**
 * nginx runs (so its package's scripts are done: writing our server earlier would clash with
 * the default site they add) with Debian's default site or without plumb's file.
 */
async function nginxNeverRendered(): Promise<boolean> {
  if (await nginxRendered()) return false;
  return systemd.isActive('nginx.service');
}

const exists = (file: string) => access(file).then(() => true, () => false);

/**
 * Renders plumb's nginx config as soon as nginx first runs, rather than on the next monitor tick
 * (up to MONITOR_INTERVAL_MS of Debian's welcome page on a fresh droplet, where cloud-init installs
 * nginx after the agent started). Until then it looks for nginx's pid file every
 * FIRST_RENDER_POLL_MS: a stat, no process; `systemctl` runs only once the file is there. Gives up
 * after FIRST_RENDER_WAIT_MS (the monitor tick still renders). Resolves with how it ended.
 */
export async function renderWhenNginxStarts(ctx: Pick<OpContext, 'state' | 'locks'>, stopped: () => boolean): Promise<'rendered' | 'already' | 'gave up'> {
  return waitForNginxStart(
    {
      pidFile: () => exists(layout.nginxPid),
      rendered: nginxRendered,
      renderIfStarted: () => ctx.locks.with(SHARED, () => renderIfNeverRendered(ctx)),
      clock: { now: Date.now, sleep: (ms) => sleep(ms, undefined, { ref: false }) },
    },
    stopped,
  );
}

/** What renderWhenNginxStarts looks at and does, apart from its schedule (a unit test drives it with a fake clock). */
export interface NginxStartProbes {
  pidFile(): Promise<boolean>;
  rendered(): Promise<boolean>;
  /** Under the shared lock; true when it wrote the config. */
  renderIfStarted(): Promise<boolean>;
  clock: Clock;
}

/**
 * renderWhenNginxStarts' schedule. A pid file with nginx not active is stale (nginx stopped or
 * died without removing it, e.g. an adopted host's nginx that is disabled): polling the shared
 * lock and `systemctl` every FIRST_RENDER_POLL_MS for an hour would contend with every deploy
 * for nothing, so once the file has been there FIRST_RENDER_STALE_PID_MS without nginx active it
 * looks only every MONITOR_INTERVAL_MS, the tick that would render anyway.
 */
export async function waitForNginxStart(probes: NginxStartProbes, stopped: () => boolean): Promise<'rendered' | 'already' | 'gave up'> {
  if (await probes.rendered()) return 'already';
  let pidFileSeenAt: number | undefined;
  const stale = () => pidFileSeenAt !== undefined && probes.clock.now() - pidFileSeenAt >= FIRST_RENDER_STALE_PID_MS;
  const ended = await pollUntil(
    async () => {
      if (stopped()) return 'gave up';
      if (!(await probes.pidFile())) return undefined;
      pidFileSeenAt ??= probes.clock.now();
      if (await probes.renderIfStarted()) {
        log.info("nginx started: plumb's nginx config rendered at once", { by: 'nginx-started' });
        return 'rendered';
      }
      return (await probes.rendered()) ? 'already' : undefined;
    },
    { timeoutMs: FIRST_RENDER_WAIT_MS, intervalMs: () => (stale() ? MONITOR_INTERVAL_MS : FIRST_RENDER_POLL_MS), clock: probes.clock },
  );
  return ended ?? 'gave up';
}

/** The lowest front port no other API has. */
export function freeFrontPort(state: AgentState): number {
  const taken = new Set(Object.values(state.apis).map((a) => a.frontPort));
  for (let port = FRONT_PORT_FIRST; port <= FRONT_PORT_LAST; port++) if (!taken.has(port)) return port;
  throw new PlumbError('NO_FRONT_PORT', `every front port ${FRONT_PORT_FIRST}-${FRONT_PORT_LAST} is taken`, 'remove an API first');
}

export function requireApi(state: AgentState, name: string) {
  const api = state.apis[name];
  if (!api) throw new PlumbError('API_UNKNOWN', `there is no API "${name}" on this droplet`, 'see `plumb status`');
  return api;
}

/** plumber's do_forward(): `/` serves this API too. */
export async function forward(name: string, ctx: OpContext): Promise<ForwardResult> {
  requireApi(ctx.state.get(), name);
  await changeRouting(ctx, (s) => ({ ...s, forward: name }));
  return { forward: name };
}

/** plumber's do_remove_forward(). */
export async function unforward(ctx: OpContext): Promise<UnforwardResult> {
  const was = ctx.state.get().forward;
  await changeRouting(ctx, (s) => ({ ...s, forward: null }));
  return { forward: null, was };
}
