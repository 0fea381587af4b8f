#!/usr/bin/env node
import { hostname } from 'node:os';
import { mkdir } from 'node:fs/promises';
import { PlumbError } from '@plumb/shared';
import { TokenVerifier } from './auth.js';
import { readConfig } from './config.js';
import { cloudInitFinished, cloudInitStatus, swapFacts, uptimeSeconds } from './facts.js';
import { loadOrCreateIdentity } from './identity.js';
import { log } from './log.js';
import { events } from './monitor/events.js';
import { startMonitor } from './monitor/monitor.js';
import { Locks } from './ops/context.js';
import { agentPaths } from './paths.js';
import { startAgentServer } from './server.js';
import { StateStore } from './state.js';
import { resumeDrains } from './ops/drain.js';
import { reconcile } from './ops/reconcile.js';
import { AGENT_VERSION } from './version.js';

/** plumb-agent: started by systemd (plumb-agent.service) on every droplet plumb provisions. */
async function main(): Promise<void> {
  if (process.argv.includes('--version')) {
    console.log(AGENT_VERSION);
    return;
  }
  const paths = agentPaths();
  const config = await readConfig(paths.config);
  await mkdir(paths.stateDir, { recursive: true, mode: 0o700 });
  const state = await StateStore.open(paths.stateDir);
  await events.open(paths.stateDir);
  await reconcile(state).catch((err: Error) => log.error('could not reconcile the droplet with the state', { error: err.message }));
  const identity = await loadOrCreateIdentity(paths.stateDir, 'plumb-agent');
  const verifier = await TokenVerifier.create(config.dropletUuid, config.controllerKeys);
  const locks = new Locks();
  const server = await startAgentServer({
    locks,
    config,
    configFile: paths.config,
    state,
    identity,
    verifier,
    facts: {
      cloudInit: cloudInitStatus,
      cloudInitFinished,
      hello: async () => ({
        type: 'hello',
        agentVersion: AGENT_VERSION,
        dropletUuid: config.dropletUuid,
        hostname: hostname(),
        enrolled: state.get().enrolledAt !== null,
        uptimeSeconds: uptimeSeconds(),
        cloudInit: await cloudInitStatus(),
        swap: await swapFacts(),
      }),
    },
  });
  resumeDrains({ state, locks, progress: () => {} });
  const monitor = startMonitor({ state, locks, events, droplet: { uuid: config.dropletUuid, hostname: hostname() } });
  log.info('started', { version: AGENT_VERSION, fingerprint: identity.fingerprint, enrolled: state.get().enrolledAt !== null });
  const stop = (signal: string) => {
    log.info('stopping', { signal });
    void Promise.all([monitor.stop(), server.close()])
      .then(() => events.flush())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  log.error(err instanceof PlumbError ? err.message : String((err as Error).stack ?? err));
  process.exitCode = 1;
});
