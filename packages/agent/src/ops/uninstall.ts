import { AGENT_PORT, type UninstallResult } from '@plumb/shared';
import { execa } from 'execa';
import { log } from '../log.js';
import { agentPaths } from '../paths.js';

/** Everything plumb's agent brought to the host (the bootstrap's and the agent's files, its state and identity). */
const AGENT_FILES = ['/opt/plumb-agent', '/usr/local/bin/plumb-agent', '/usr/local/sbin/plumb-bootstrap', '/etc/systemd/system/plumb-agent.service'];

/**
 * `plumb uninstall`: after the answer, a transient unit outside the agent's own (which it stops)
 * closes the agent's port, disables and removes the agent, its config and state. The APIs, nginx
 * and the base packages stay: the host keeps serving what it served.
 */
export function uninstall(afterAnswer: (work: () => void) => void): UninstallResult {
  const paths = agentPaths();
  const removing = [...AGENT_FILES, paths.config.replace(/\/[^/]+$/, ''), paths.stateDir];
  const script = [
    `ufw delete allow ${AGENT_PORT}/tcp || true`,
    'systemctl disable --now plumb-agent.service || true',
    `rm -rf ${removing.map((p) => `'${p}'`).join(' ')}`,
    'systemctl daemon-reload',
  ].join('; ');
  afterAnswer(() => {
    log.info('uninstall: removing the agent', { removing: removing.join(' ') });
    // --no-block and a unit of its own: the work must outlive the agent it stops.
    void execa('systemd-run', ['--no-block', '--collect', '--unit=plumb-uninstall', '/bin/sh', '-c', script], { reject: false });
  });
  return { removing };
}
