import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  AGENT_ANSWER_TIMEOUT_MS,
  AGENT_PORT,
  AGENT_START_TIMEOUT_MS,
  BOOTSTRAP_POLL_MS,
  DROPLET_BOOT_TIMEOUT_MS,
  CLOUD_INIT_DONE_TIMEOUT_MS,
  DROPLET_ACTIVE_TIMEOUT_MS,
  checkInput,
  DropletName,
  ENROLMENT_SECRET_BYTES,
  PlumbError,
  pollUntil,
  ValidationError,
  type BootstrapStatus,
  type CloudInitStatus,
} from '@plumb/shared';
import { AgentConnection, enrol, PinMismatchError, RemoteError, type AgentAddress } from '../agent/client.js';
import { agentPackage, type AgentPackage } from '../agent/package.js';
import { probe, uploadPackage } from '../agent/bootstrap-client.js';
import { renderUserData } from '../cloud-init.js';
import { packageFile } from '../package-files.js';
import type { Context } from '../context.js';
import { fromEnv } from '../digitalocean/client.js';
import type { KnownDroplet } from '../local/droplets-state.js';
import { loadOrCreateSigningKey, type SigningKey } from '../local/keys.js';
import { tokenFor } from '../agent/tokens.js';
import { deploy, type DeployOutcome } from './deploy.js';

/** Every droplet plumb makes carries this tag: how it finds them again. */
export const PLUMB_TAG = 'plumb';
const TAG_RULE = /^[a-zA-Z0-9_:-]{1,255}$/;

export interface ProvisionOptions {
  name?: string;
  region: string;
  size: string;
  image: string;
  sshKey?: string;
  tags: string[];
  /** Deploy the example API `hello` and serve it at / too (plumber's do_provision(example = TRUE)). */
  example?: boolean;
  /** ufw without SSH (22): only 80, 443 and the agent's port; `plumb firewall open-ssh` opens it later. */
  closeSsh?: boolean;
  /** A mirror the droplet downloads the agent package from (same size and sha512 check) instead of plumb sending it. */
  agentUrl?: string;
}

/** The example API shipped with the controller. */
export const EXAMPLE_DIR = fileURLToPath(packageFile('examples/hello/'));

export interface ProvisionResult {
  droplet: KnownDroplet;
  example: DeployOutcome | null;
  agentVersion: string;
  cloudInit: CloudInitStatus;
  swap: { path: string; bytes: number; enabled: boolean } | null;
  tookMs: number;
}

/**
 * plumber's do_provision(): a droplet with R, plumber, nginx, ufw and the agent, made by
 * cloud-init; then the agent is enrolled (its certificate pinned) and cloud-init awaited.
 */
export async function provision(opts: ProvisionOptions, ctx: Context): Promise<ProvisionResult> {
  const started = Date.now();
  const name = opts.name ?? `plumb-${randomBytes(3).toString('hex')}`;
  checkInput(DropletName, name, 'droplet name');
  for (const tag of opts.tags) if (!TAG_RULE.test(tag)) throw new ValidationError(`invalid tag "${tag}": letters, digits, "_", ":" and "-" only`);
  const api = fromEnv(ctx.env);

  // Everything that can be refused locally is checked before DigitalOcean is asked for anything.
  const key = await loadOrCreateSigningKey(ctx.configDir);
  const dropletUuid = randomUUID();
  const enrolmentSecret = randomBytes(ENROLMENT_SECRET_BYTES).toString('hex');
  const pkg = await agentPackage(ctx.env, opts.agentUrl);
  // Rendering validates too: over 64 KiB or against cloud-init's schema is refused here, before any API call.
  const userData = renderUserData({
    agentConfig: { dropletUuid, dropletName: name, port: AGENT_PORT, controllerKeys: [key.publicKey], enrolmentSecret },
    agentPackage: { version: pkg.version, sha512: pkg.sha512, bytes: pkg.bytes, ...(pkg.url ? { url: pkg.url } : {}) },
    allowSsh: !opts.closeSsh,
  });

  ctx.progress({ step: 'checking the account' });
  if ((await api.listDroplets({ tag: PLUMB_TAG })).some((d) => d.name === name)) {
    throw new ValidationError(`a plumb droplet named "${name}" already exists`, 'choose another --name, or remove it with `plumb destroy`');
  }
  const sshKey = opts.sshKey === undefined ? undefined : await api.findSshKey(opts.sshKey);
  if (opts.sshKey !== undefined && !sshKey) throw new ValidationError(`DigitalOcean has no SSH key "${opts.sshKey}"`, 'give a fingerprint or name from your account, or add the key first');

  ctx.progress({ step: `creating droplet ${name} (${opts.size}, ${opts.region}, ${opts.image})` });
  const created = await api.createDroplet({
    name,
    region: opts.region,
    size: opts.size,
    image: opts.image,
    tags: [PLUMB_TAG, ...opts.tags.filter((t) => t !== PLUMB_TAG)],
    userData,
    ...(sshKey ? { sshKeys: [sshKey.fingerprint] } : {}),
  });
  const record: KnownDroplet = {
    name,
    id: created.id,
    uuid: dropletUuid,
    ipv4: '',
    agentPort: AGENT_PORT,
    fingerprint: null,
    region: opts.region,
    size: opts.size,
    createdAt: new Date().toISOString(),
  };
  // Remembered at once, so a provision that fails later still shows in `plumb droplets` and can be destroyed.
  await ctx.droplets.save(record);

  ctx.progress({ step: 'waiting for the droplet to be active' });
  const { publicIpv4 } = await api.waitForActive(created.id, { timeoutMs: DROPLET_ACTIVE_TIMEOUT_MS, intervalMs: 2000 });
  record.ipv4 = publicIpv4;
  await ctx.droplets.save(record);

  const address: AgentAddress = { host: publicIpv4, port: AGENT_PORT };
  await installAndEnrol(record, enrolmentSecret, pkg, key, ctx);

  ctx.progress({ step: 'waiting for cloud-init to finish' });
  const connection = await AgentConnection.open(address, record.fingerprint!, await tokenFor(key, dropletUuid));
  try {
    const cloudInit = await connection.request<CloudInitStatus>(
      { type: 'cloud-init-wait', timeoutMs: CLOUD_INIT_DONE_TIMEOUT_MS },
      { onProgress: (_step, detail) => ctx.progress({ step: 'waiting for cloud-init to finish', ...(detail ? { detail } : {}) }) },
    );
    if (cloudInit.status !== 'done') {
      throw new PlumbError('CLOUD_INIT_FAILED', `cloud-init on ${name} ended "${cloudInit.status}"${cloudInit.errors.length ? `: ${cloudInit.errors.join('; ')}` : ''}`, `see /var/log/cloud-init-output.log on the droplet; \`plumb destroy ${name}\` removes it`);
    }
    const facts = await connection.request<{ swap: ProvisionResult['swap']; agentVersion: string }>({ type: 'facts' });
    const example = opts.example ? await deploy({ dir: EXAMPLE_DIR, name: 'hello', forward: true, droplet: String(record.id) }, ctx) : null;
    ctx.progress({ step: 'done', done: true });
    return { droplet: record, example, agentVersion: facts.agentVersion, cloudInit, swap: facts.swap, tookMs: Date.now() - started };
  } finally {
    connection.close();
  }
}

/**
 * The bootstrap on the record's address gets the agent package and starts the agent; the agent is
 * enrolled and its certificate pinned in the record (saved). Provision and adopt share this path.
 */
export async function installAndEnrol(record: KnownDroplet, enrolmentSecret: string, pkg: AgentPackage, key: SigningKey, ctx: Context): Promise<void> {
  const address: AgentAddress = { host: record.ipv4, port: record.agentPort };
  const pin = await startAgent(address, enrolmentSecret, pkg, record, ctx);
  ctx.progress({ step: 'enrolling the agent' });
  const fingerprint = await enrol(address, () => tokenFor(key, record.uuid), enrolmentSecret);
  // The bootstrap made the agent's own key: a different one now means someone else answers.
  if (pin !== null && fingerprint !== pin) throw new PinMismatchError(record.ipv4, pin, fingerprint);
  record.fingerprint = fingerprint;
  await ctx.droplets.save(record);
}

/** The droplet could not get going: cloud-init failed, or the bootstrap gave up; with cloud-init's output. */
export class DropletFailedError extends RemoteError {
  override name = 'DropletFailedError';
  override get logTitle(): string {
    return 'the end of /var/log/cloud-init-output.log on the droplet';
  }
}

type Host = Pick<KnownDroplet, 'name' | 'external'>;

/** What is left, and how to be rid of it: a DigitalOcean droplet is destroyed; an adopted host (which destroy refuses) is forgotten and adopted again. */
const destroyHint = ({ name, external }: Host) =>
  external ? `the host keeps what adopt installed: \`plumb forget ${name}\`, fix what the log names, then adopt it again with --force` : `the droplet is still there (and billed): \`plumb destroy ${name}\` removes it`;

function failed(host: Host, status: BootstrapStatus): DropletFailedError | undefined {
  const { cloudInit } = status;
  if (cloudInit.errors.length > 0) {
    return new DropletFailedError({
      code: 'CLOUD_INIT_FAILED',
      message: `cloud-init on ${host.name} failed in stage ${cloudInit.stage ?? '?'}: ${cloudInit.errors.join('; ')}`,
      hint: destroyHint(host),
      step: `cloud-init ${cloudInit.stage ?? ''}`.trim(),
      log: status.output,
    });
  }
  if (status.stage === 'failed') {
    // Mostly cloud-init not bringing what the agent needs: name its stage, as for its own errors.
    const step = cloudInit.status === 'running' && cloudInit.stage ? `cloud-init ${cloudInit.stage}` : 'agent install';
    return new DropletFailedError({ code: 'BOOTSTRAP_FAILED', message: `the agent could not be installed on ${host.name}: ${status.error ?? 'unknown reason'}`, hint: destroyHint(host), step, log: status.output });
  }
  return undefined;
}

const STEPS: Record<BootstrapStatus['stage'], string> = {
  'waiting-for-package': 'sending the agent to the droplet',
  downloading: 'the droplet downloads the agent from --agent-url',
  installing: 'the droplet installs the agent',
  'waiting-for-node': 'waiting for cloud-init to install node',
  'starting-agent': 'starting the agent',
  failed: 'the droplet gave up',
};

/**
 * From `active` to an agent answering on its port: the bootstrap answers first (within
 * DROPLET_BOOT_TIMEOUT_MS, or the droplet is reported as not booting), gets the package, and shows
 * cloud-init's progress until it hands the port to the agent. A failure in cloud-init or in the
 * bootstrap ends the wait at once, with cloud-init's output. Returns the fingerprint the bootstrap
 * proved (null if the agent answered before the bootstrap was seen, with a mirror URL).
 */
async function startAgent(address: AgentAddress, secret: string, pkg: AgentPackage, host: Host, ctx: Context): Promise<string | null> {
  const started = Date.now();
  let last: BootstrapStatus | undefined;
  let silentSince: number | null = null;
  let uploaded = pkg.url !== undefined;
  let shown = '';
  const show = (step: string, detail?: string) => {
    if (step + (detail ?? '') === shown) return;
    shown = step + (detail ?? '');
    ctx.progress({ step, ...(detail ? { detail } : {}) });
  };
  show(`waiting for the droplet to boot (${address.host})`);
  // Each stage has its own limit (checked in the probe); AGENT_ANSWER_TIMEOUT_MS bounds them all.
  const answered = await pollUntil(
    async () => {
      const answer = await probe(address, secret);
      if (answer.kind === 'agent') return { fingerprint: last?.fingerprint ?? null };
      const now = Date.now();
      if (answer.kind === 'bootstrap') {
        last = answer.status;
        silentSince = null;
        const failure = failed(host, last);
        if (failure) throw failure;
        if (!uploaded && last.stage === 'waiting-for-package') {
          show(STEPS[last.stage], `${Math.ceil(pkg.bytes / 1024)} KiB`);
          last = await uploadPackage(address, last.fingerprint, secret, pkg);
          uploaded = true;
          const refused = failed(host, last);
          if (refused) throw refused;
        }
        show(STEPS[last.stage], last.cloudInit.stage ? `cloud-init ${last.cloudInit.stage}` : undefined);
      } else if (last === undefined) {
        if (now - started > DROPLET_BOOT_TIMEOUT_MS) {
          throw new PlumbError('DROPLET_SILENT', `droplet ${host.name} has not answered on ${address.host}:${address.port} in the ${DROPLET_BOOT_TIMEOUT_MS / 60_000} minutes since it became active (${answer.reason}): it did not boot, or cloud-init did not run`, `${destroyHint(host)}; DigitalOcean's console for the droplet shows its boot`);
        }
      } else {
        // The bootstrap has let go of the port: the agent should be there in moments.
        silentSince ??= now;
        if (now - silentSince > AGENT_START_TIMEOUT_MS) {
          throw new PlumbError('AGENT_NEVER_STARTED', `the agent on ${host.name} was installed but has not answered for ${AGENT_START_TIMEOUT_MS / 1000} s`, `${destroyHint(host)}; its log: journalctl -u plumb-agent (ssh root@${address.host})`);
        }
      }
      return undefined;
    },
    { timeoutMs: AGENT_ANSWER_TIMEOUT_MS, intervalMs: BOOTSTRAP_POLL_MS },
  );
  if (answered) return answered.fingerprint;
  throw new PlumbError('AGENT_NEVER_ANSWERED', `the agent on ${host.name} did not answer within ${AGENT_ANSWER_TIMEOUT_MS / 60_000} minutes (the droplet was at: ${last ? STEPS[last.stage] : 'booting'})`, destroyHint(host));
}
