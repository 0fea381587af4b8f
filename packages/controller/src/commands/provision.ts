import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  AGENT_ANSWER_TIMEOUT_MS,
  AGENT_PORT,
  CLOUD_INIT_DONE_TIMEOUT_MS,
  DROPLET_ACTIVE_TIMEOUT_MS,
  checkInput,
  DropletName,
  ENROLMENT_SECRET_BYTES,
  PlumbError,
  ValidationError,
  type CloudInitStatus,
} from '@plumb/shared';
import { AgentConnection, agentAnswers, enrol, type AgentAddress } from '../agent-client.js';
import { agentInstallCommands, agentPackage } from '../agent-package.js';
import { renderUserData } from '../cloud-init.js';
import type { Context } from '../context.js';
import { fromEnv } from '../digitalocean.js';
import type { KnownDroplet } from '../droplets-state.js';
import { loadOrCreateSigningKey } from '../keys.js';
import { tokenFor } from '../tokens.js';
import { deploy, type DeployOutcome } from './deploy.js';

/** Every droplet plumb makes carries this tag: how it finds them again. */
export const PLUMB_TAG = 'plumb';
const TAG_RULE = /^[a-zA-Z0-9_:-]{1,255}$/;
const AGENT_POLL_MS = 1000;

export interface ProvisionOptions {
  name?: string;
  region: string;
  size: string;
  image: string;
  sshKey?: string;
  tags: string[];
  /** Deploy the example API `hello` and serve it at / too (plumber's do_provision(example = TRUE)). */
  example?: boolean;
}

/** The example API shipped with the controller. */
export const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/hello/', import.meta.url));

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
  const pkg = await agentPackage(ctx.env);
  // Rendering validates too: over 64 KiB or against cloud-init's schema is refused here, before any API call.
  const userData = renderUserData({
    agentConfig: { dropletUuid, dropletName: name, port: AGENT_PORT, controllerKeys: [key.publicKey], enrolmentSecret },
    agentInstall: agentInstallCommands(pkg),
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
  ctx.progress({ step: `waiting for the agent at ${publicIpv4}:${AGENT_PORT} (cloud-init installs packages first)` });
  await waitForAgent(address);

  ctx.progress({ step: 'enrolling the agent' });
  record.fingerprint = await enrol(address, await tokenFor(key, dropletUuid), enrolmentSecret);
  await ctx.droplets.save(record);

  ctx.progress({ step: 'waiting for cloud-init to finish' });
  const connection = await AgentConnection.open(address, record.fingerprint, await tokenFor(key, dropletUuid));
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

async function waitForAgent(address: AgentAddress): Promise<void> {
  const deadline = Date.now() + AGENT_ANSWER_TIMEOUT_MS;
  while (!(await agentAnswers(address))) {
    if (Date.now() > deadline) {
      throw new PlumbError('AGENT_NEVER_ANSWERED', `the agent on ${address.host} did not answer within ${AGENT_ANSWER_TIMEOUT_MS / 60_000} minutes`, 'see /var/log/cloud-init-output.log on the droplet (ssh root@ADDRESS)');
    }
    await new Promise((resolve) => setTimeout(resolve, AGENT_POLL_MS));
  }
}
