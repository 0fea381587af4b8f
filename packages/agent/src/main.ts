#!/usr/bin/env node
import { hostname } from 'node:os';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import https from 'node:https';
import { AGENT_FEATURES, AGENT_PATHS, HANDSHAKE_TIMEOUT_MS, PlumbError, PROTOCOL_VERSION } from '@plumb/shared';
import { TokenVerifier } from './auth.js';
import { ConfigStore, readConfig } from './config.js';
import { cloudInitFinished, cloudInitStatus, swapFacts, uptimeSeconds } from './facts.js';
import { loadOrCreateIdentity } from './identity.js';
import { log } from './log.js';
import { events } from './monitor/events.js';
import { startMonitor } from './monitor/monitor.js';
import { startDropletHealthServer } from './monitor/droplet-health.js';
import { Locks } from './ops/context.js';
import { agentPaths } from './paths.js';
import { startAgentServer } from './server.js';
import { StateStore } from './state.js';
import { resumeDrains } from './ops/drain.js';
import { moveToApiUsers, reconcile } from './ops/reconcile.js';
import { resumeSpares } from './ops/spare-decide.js';
import { rememberMeasured } from './ops/spare.js';
import { SPARE_MEASURED_FILE } from './ops/spare-measured.js';
import { renderWhenNginxStarts } from './ops/routing.js';
import { AGENT_VERSION } from './version.js';
import { ensureUnitStartsCurrent, lastUpgrade, runGuard, settleUpgrade } from './upgrade/install.js';
import { waitForWorkers } from './system/nat.js';

/** plumb-agent: started by systemd (plumb-agent.service) on every droplet plumb provisions. */
async function main(): Promise<void> {
  if (process.argv.includes('--version')) {
    console.log(AGENT_VERSION);
    return;
  }
  if (process.argv.includes('--wait-for-workers')) return waitForWorkers();
  const paths = agentPaths();
  const guard = process.argv.indexOf('--upgrade-guard');
  if (guard > 0) return runGuard(paths.stateDir, process.argv[guard + 1] ?? '');
  const config = await readConfig(paths.config);
  await mkdir(paths.stateDir, { recursive: true, mode: 0o700 });
  const state = await StateStore.open(paths.stateDir, { enrolled: config.enrolmentSecret === undefined });
  await events.open(paths.stateDir);
  if (state.recovered) events.record({ kind: 'state-rebuilt', detail: state.recovered.detail });
  const upgrade = await settleUpgrade(paths.stateDir, AGENT_VERSION);
  if (upgrade.event) events.record(upgrade.event);
  const reconciled = await reconcile(state).then(
    () => true,
    (err: Error) => {
      log.error('could not reconcile the droplet with the state', { error: err.message });
      return false;
    },
  );
  await rememberMeasured(path.join(paths.stateDir, SPARE_MEASURED_FILE), Object.keys(state.get().apis));
  const identity = await loadOrCreateIdentity(paths.stateDir, 'plumb-agent');
  const verifier = await TokenVerifier.create(config.dropletUuid, config.controllerKeys);
  const locks = new Locks();
  const server = await startAgentServer({
    locks,
    config: new ConfigStore(paths.config, config),
    state,
    stateDir: paths.stateDir,
    version: AGENT_VERSION,
    identity,
    verifier,
    facts: {
      cloudInit: cloudInitStatus,
      cloudInitFinished,
      hello: async () => ({
        type: 'hello',
        agentVersion: AGENT_VERSION,
        protocol: PROTOCOL_VERSION,
        dropletUuid: config.dropletUuid,
        hostname: hostname(),
        enrolled: state.get().enrolledAt !== null,
        uptimeSeconds: uptimeSeconds(),
        cloudInit: await cloudInitStatus(),
        swap: await swapFacts(),
        upgrade: await lastUpgrade(paths.stateDir),
        features: [AGENT_FEATURES.deltaUpload, AGENT_FEATURES.secrets, AGENT_FEATURES.exportRelease, AGENT_FEATURES.groupMarks, AGENT_FEATURES.copiedMarks, AGENT_FEATURES.spareAuto],
      }),
    },
  });
  const drains = resumeDrains({ state, locks, progress: () => {} });
  // Not where reconcile failed: a spare of the last run it did not stop may still hold its unit.
  if (reconciled) void resumeSpares({ state, locks, progress: () => undefined }, (name) => drains.get(name) ?? Promise.resolve());
  void moveToApiUsers({ state, locks, progress: () => undefined }).catch((err: Error) => log.error('could not move the apis to their own users', { error: err.message }));
  // A port taken (an older agent still stopping) must not keep the agent down: the balancer then sees 502.
  const dropletHealth = await startDropletHealthServer(state).catch((err: Error) => {
    log.error('could not serve the droplet health for load balancers', { error: err.message });
    return undefined;
  });
  const monitor = startMonitor({ state, locks, events, droplet: { uuid: config.dropletUuid, hostname: hostname() } });
  let stopping = false;
  void renderWhenNginxStarts({ state, locks }, () => stopping).catch((err: Error) => log.error("could not render plumb's nginx config", { error: err.message }));
  log.info('started', { version: AGENT_VERSION, fingerprint: identity.fingerprint, enrolled: state.get().enrolledAt !== null });
  // An upgrade to this version is confirmed only once the agent answers on its own port.
  await answersItself(config.host ?? '127.0.0.1', server.port);
  const confirmed = await upgrade.confirm();
  if (confirmed) events.record(confirmed);
  await ensureUnitStartsCurrent().catch((err: Error) => log.warn('could not check the agent unit', { error: err.message }));
  const stop = (signal: string) => {
    log.info('stopping', { signal });
    stopping = true;
    void Promise.all([monitor.stop(), server.close(), dropletHealth?.close()])
      .then(() => events.flush())
      .then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/** GET /v1/live over TLS on the agent's own port: 200, or a throw (and the upgrade is not confirmed). */
function answersItself(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port, path: AGENT_PATHS.live, rejectUnauthorized: false, timeout: HANDSHAKE_TIMEOUT_MS }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`the agent's own ${AGENT_PATHS.live} answered ${res.statusCode ?? '?'}`));
    });
    req.on('timeout', () => req.destroy(new Error(`the agent's own ${AGENT_PATHS.live} did not answer`)));
    req.on('error', reject);
  });
}

main().catch((err: unknown) => {
  log.error(err instanceof PlumbError ? err.message : String((err as Error).stack ?? err));
  process.exitCode = 1;
});
