import { CLOUD_INIT_DONE_TIMEOUT_MS, CLOUD_INIT_POLL_MS, PlumbError, pollUntil, type CloudInitStatus, type Hello, type Request } from '@plumb/shared';
import { setAlerts } from './monitor/alerts.js';
import type { OpContext } from './ops/context.js';
import { deploy } from './ops/deploy.js';
import { exportRelease } from './ops/export.js';
import { firewall } from './ops/firewall.js';
import { https } from './ops/https.js';
import { logs, type LogSink } from './ops/logs.js';
import { packagesOf, packagesPlan, setRepos } from './ops/packages.js';
import { releases, rollback, scale } from './ops/releases.js';
import { restart } from './ops/restart.js';
import { secrets, setSecrets } from './ops/secrets.js';
import { remove } from './ops/remove.js';
import { forward, unforward } from './ops/routing.js';
import { status } from './ops/status.js';
import type { Upload } from './upload.js';
import type { KeyRing } from './ops/keys.js';
import { uninstall } from './ops/uninstall.js';
import { retireLegacy } from './ops/legacy.js';
import { upgrade } from './ops/upgrade.js';

/** What requests read about the droplet; the real one asks cloud-init and /proc. */
export interface Facts {
  hello(): Promise<Hello>;
  cloudInit(): Promise<CloudInitStatus>;
  cloudInitFinished(status: CloudInitStatus): boolean;
}

/** What requests about the agent itself (upgrade, keys) act on. */
export interface AgentControl {
  stateDir: string;
  version: string;
  keys: KeyRing;
}

export interface RequestContext {
  facts: Facts;
  ctx: OpContext;
  upload: Upload | undefined;
  sink: LogSink;
  /** The controller key that signed this socket's token. */
  kid: string;
  control: AgentControl;
  othersInFlight: () => number;
  /** For an export: sends a piece of the bundle; resolves when the socket has room again. */
  chunk: (data: Buffer) => Promise<void>;
  /** For a deploy with a file list: tells the controller which files the bundle must hold. */
  need: (files: number[]) => void;
  afterAnswer: (work: () => void) => void;
}

type Answerable = Exclude<Request, { type: 'upload-end' | 'cancel' }>;

/** One request, answered once; events on the way go out through the context. */
export async function handleRequest(request: Answerable, rc: RequestContext): Promise<unknown> {
  const { ctx, facts } = rc;
  switch (request.type) {
    case 'facts':
      return facts.hello();
    case 'cloud-init-wait':
      return waitForCloudInit(request.timeoutMs, facts, (s) => ctx.progress('cloud-init', `${s.status}${s.stage ? ` (${s.stage})` : ''}`));
    case 'deploy': {
      // nginx, R and plumber arrive with cloud-init; a deploy right after provision waits for them.
      await waitForCloudInit(CLOUD_INIT_DONE_TIMEOUT_MS, facts, (s) => ctx.progress('waiting for cloud-init to install R, plumber and nginx', s.status));
      if (!rc.upload) throw new PlumbError('BAD_REQUEST', 'a deploy needs a bundle');
      return deploy(request, { data: rc.upload, need: rc.need }, ctx);
    }
    case 'remove':
      return remove(request.name, request.keepFiles, ctx);
    case 'forward':
      return forward(request.name, ctx);
    case 'unforward':
      return unforward(ctx);
    case 'restart':
      return restart(request.name, request.wait, ctx);
    case 'secrets':
      return secrets(request.name, ctx);
    case 'secrets-set':
      return setSecrets(request, ctx);
    case 'status':
      return status(ctx, await facts.hello());
    case 'logs':
      return logs(request, rc.sink, ctx);
    case 'https':
      await waitForCloudInit(CLOUD_INIT_DONE_TIMEOUT_MS, facts, (s) => ctx.progress('waiting for cloud-init to install nginx, ufw and certbot', s.status));
      return https(request, ctx);
    case 'releases':
      return releases(request.name, ctx);
    case 'rollback':
      return rollback(request.name, request.to, request.wait, request.group, ctx);
    case 'scale':
      return scale(request.name, request.workers, request.wait, ctx);
    case 'watch':
      // A subscription of the socket, not a one-shot request: Session serves it (monitor/watch.ts).
      throw new PlumbError('BAD_REQUEST', 'watch is served by the session');
    case 'packages-plan':
      await waitForCloudInit(CLOUD_INIT_DONE_TIMEOUT_MS, facts, (s) => ctx.progress('waiting for cloud-init to install R', s.status));
      return packagesPlan(request.name, request.packages, ctx);
    case 'packages':
      return packagesOf(request.name, ctx);
    case 'repos':
      return setRepos(request, ctx);
    case 'alerts':
      return setAlerts(request.webhook, ctx, await facts.hello());
    case 'firewall':
      // ufw arrives with cloud-init's base install, and cloud-init turns it on last.
      await waitForCloudInit(CLOUD_INIT_DONE_TIMEOUT_MS, facts, (s) => ctx.progress('waiting for cloud-init to set up ufw', s.status));
      return firewall(request, ctx);
    case 'uninstall':
      return uninstall(rc.afterAnswer, ctx);
    case 'retire-legacy':
      return retireLegacy(request.names, ctx);
    case 'upgrade':
      if (!rc.upload) throw new PlumbError('BAD_REQUEST', 'an upgrade needs the agent package');
      return upgrade(request, { ctx, upload: rc.upload, stateDir: rc.control.stateDir, runningVersion: rc.control.version, othersInFlight: rc.othersInFlight, afterAnswer: rc.afterAnswer });
    case 'keys':
      return rc.control.keys.list(rc.kid);
    case 'keys-add':
      return rc.control.keys.add(request.key, rc.kid);
    case 'keys-revoke':
      return rc.control.keys.revoke(request.key, rc.kid);
    case 'export':
      return exportRelease(request.name, rc.chunk, ctx);
  }
}

/** Reports each change of cloud-init's status until it has finished; the result is the last one. */
async function waitForCloudInit(timeoutMs: number, facts: Facts, onChange: (s: CloudInitStatus) => void): Promise<CloudInitStatus> {
  let last = '';
  let status: CloudInitStatus | undefined;
  const finished = await pollUntil(
    async () => {
      status = await facts.cloudInit();
      if (facts.cloudInitFinished(status)) return status;
      const key = JSON.stringify(status);
      if (key !== last) onChange(status);
      last = key;
      return undefined;
    },
    { timeoutMs, intervalMs: CLOUD_INIT_POLL_MS },
  );
  if (finished) return finished;
  throw new PlumbError('CLOUD_INIT_TIMEOUT', `cloud-init still ${status?.status ?? 'unknown'} after ${Math.round(timeoutMs / 1000)} s`, 'look at /var/log/cloud-init-output.log on the droplet');
}
