import path from 'node:path';
import { AGENT_PORT, type UninstallResult } from '@plumb/shared';
import { execa } from 'execa';
import { log } from '../log.js';
import { agentPaths } from '../paths.js';
import { layout } from '../system/layout.js';
import type { OpContext } from './context.js';

/**
 * Everything plumb's agent brought to the host (the bootstrap's and the agent's files, its config
 * and identity), and plumb-routing.service, which runs the agent at boot. plumb-isolation.service
 * stays: it runs only nft, and loads the table the APIs left behind are kept apart and reached by.
 */
const AGENT_FILES = ['/opt/plumb-agent', '/usr/local/bin/plumb-agent', '/usr/local/sbin/plumb-bootstrap', '/etc/systemd/system/plumb-agent.service', layout.routingUnit];

/**
 * What of the agent's state directory the APIs left behind still need: their workers' env files
 * (systemd reads them at every start), the nftables map loaded at boot (plumb-isolation.service),
 * certbot's webroot, and the state itself, which a later `plumb adopt` of the host takes over.
 */
const KEPT = ['state.json', 'state.json.backup', 'instances', 'nat.nft', 'acme'];

/**
 * `plumb uninstall`: after the answer, a transient unit outside the agent's own (which it stops)
 * closes the agent's port, disables and removes the agent, its config and identity. The APIs,
 * nginx, the base packages and what serving needs (KEPT) stay: the host keeps serving what it
 * served, through restarts and reboots, and a new agent (adopt again) knows those APIs.
 */
export function uninstall(afterAnswer: (work: () => void) => void, ctx: Pick<OpContext, 'state'>): UninstallResult {
  const paths = agentPaths();
  const stateDir = paths.stateDir;
  const removed = [...AGENT_FILES, paths.config.replace(/\/[^/]+$/, '')];
  const removing = [...removed, `${stateDir}/* but ${KEPT.join(', ')}`];
  const keep = KEPT.map((name) => `! -name '${name}'`).join(' ');
  const script = [
    `ufw delete allow ${AGENT_PORT}/tcp || true`,
    'systemctl disable --now plumb-agent.service || true',
    // Apart: one unit systemctl does not know (no API ever deployed) would fail the whole command.
    `systemctl disable ${path.basename(layout.routingUnit)} || true`,
    `rm -rf ${removed.map((p) => `'${p}'`).join(' ')}`,
    `find '${stateDir}' -mindepth 1 -maxdepth 1 ${keep} -exec rm -rf {} +`,
    'systemctl daemon-reload',
  ].join('; ');
  afterAnswer(() => {
    log.info('uninstall: removing the agent', { removing: removing.join(' ') });
    // The next agent is enrolled afresh: no socket before its own enrolment.
    void ctx.state
      .update((s) => ({ ...s, enrolledAt: null }))
      .finally(() => {
        // --no-block and a unit of its own: the work must outlive the agent it stops.
        void execa('systemd-run', ['--no-block', '--collect', '--unit=plumb-uninstall', '/bin/sh', '-c', script], { reject: false });
      });
  });
  return { removing };
}
