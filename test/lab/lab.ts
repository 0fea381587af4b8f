import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { agentPackage } from '@plumb/controller/agent/package';
import { dropletTrustFiles, startAcmeServerOnFreePorts, type AcmeServer } from './acme.js';
import { HaproxyBalancers } from './balancers/haproxy.js';
import { LabCertificateAuthority } from './certificate-authority.js';
import { startDoStandin } from './do-standin/index.js';
import { NspawnMachines } from './droplets/index.js';
import type { NspawnDroplet } from './droplets/droplet.js';
import { ensureHostSide, LAB_HOST_ADDRESS } from './droplets/network.js';
import { ensureRootfs } from './droplets/rootfs.js';
import { labDown } from './down.js';
import { saveInstance } from './instances.js';
import { startMetadataServer, type MetadataServer } from './metadata.js';
import { startPackageServer } from './package-server.js';
import { instancesDir } from './paths.js';

/**
 * DigitalOcean still counts a certificate in use for a moment after the balancer that used it was
 * deleted or dropped its rule (terraform-provider-digitalocean retries the delete for that, PR
 * #951); the lab's stand-in does too, so plumb's clean-up meets it as it would for real.
 */
const LAB_CERTIFICATE_RELEASE_MS = 2_000;

export interface LabOptions {
  /** Names this lab's resources on the host; random when omitted. */
  instance?: string;
  /** Port for the DigitalOcean stand-in on 127.0.0.1 (0 = any free port). */
  port?: number;
  /** Also start the ACME server (pebble) for HTTPS work. */
  acme?: boolean;
  /**
   * Serve the built agent package on the lab's network, as a mirror for `--agent-url` (default
   * true). Without it a droplet reaches only what a real one does: plumb sends it the agent.
   */
  packageServer?: boolean;
  log?: (line: string) => void;
}

/** A running lab: a DigitalOcean API on loopback whose droplets really boot, and an ACME server. */
export interface Lab {
  instance: string;
  /** The v2 API's URL (ends in /v2), as dots-wrapper wants it: `createApiClient({ token, endpoint: apiUrl })`. */
  apiUrl: string;
  /** The stand-in's own root, where `/lab/faults` and `/lab/requests` are. */
  controlUrl: string;
  /** The one API token the stand-in accepts. */
  token: string;
  /** A mirror of the built agent package on the lab's network (plumb's --agent-url); none with `packageServer: false`. */
  agentUrl: string | undefined;
  machines: NspawnMachines;
  /** The HAProxies behind `/v2/load_balancers`. */
  balancers: HaproxyBalancers;
  /** Signs the stand-in's `lets_encrypt` certificates; trust its `caPem()` to check the balancers' TLS. */
  certificates: LabCertificateAuthority;
  acme?: AcmeServer;
  /** DigitalOcean's metadata service for the stand-in's droplets (`hide` one: a host DigitalOcean did not make). */
  metadata: MetadataServer;
  /** The booted container behind a droplet id, to run commands inside it. */
  droplet(id: number): NspawnDroplet;
  /** Deletes every droplet and stops every process this lab started. */
  stop(): Promise<void>;
}

export async function startLab(opts: LabOptions = {}): Promise<Lab> {
  const log = opts.log ?? (() => {});
  const instance = opts.instance ?? randomBytes(3).toString('hex');
  const token = `dop_v1_${randomBytes(32).toString('hex')}`;
  const stateDir = path.join(instancesDir(), instance);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await ensureRootfs(log);
  await ensureHostSide();

  // plumb sends the agent to each droplet itself; this mirror is for trying --agent-url.
  const pkg = await agentPackage({});
  const packages = opts.packageServer === false ? undefined : await startPackageServer({ dir: path.dirname(pkg.tarballPath), host: LAB_HOST_ADDRESS });
  const agentUrl = packages?.url(path.basename(pkg.tarballPath));
  // Filled in once the ACME server is up; no droplet can be asked for before startLab returns.
  const bootFiles: Record<string, string> = {};
  const machines = new NspawnMachines(instance, log, bootFiles);
  const balancers = new HaproxyBalancers(instance, log);
  const certificates = new LabCertificateAuthority(path.join(stateDir, 'certificates'));
  const standin = await startDoStandin({ tokens: [token], machines, balancers, issuer: certificates, log, host: '127.0.0.1', port: opts.port ?? 0, certificateReleaseMs: LAB_CERTIFICATE_RELEASE_MS });
  let acme: AcmeServer | undefined;
  let metadata: MetadataServer | undefined;
  try {
    metadata = await startMetadataServer({ host: LAB_HOST_ADDRESS, store: standin.store, machines });
    machines.metadataPort = metadata.port;
    if (opts.acme) {
      ({ server: acme } = await startAcmeServerOnFreePorts({ stateDir: path.join(stateDir, 'acme'), bindAddress: LAB_HOST_ADDRESS }));
      Object.assign(bootFiles, dropletTrustFiles(acme.listenerCaPem));
    }
    await saveInstance({
      instance,
      pid: process.pid,
      apiUrl: standin.endpoint,
      controlUrl: standin.url,
      token,
      ...(agentUrl ? { agentUrl } : {}),
      stateDir,
      startedAt: new Date().toISOString(),
      ...(acme ? { acmeDirectoryUrl: acme.directoryUrl, acmeCaPath: acme.listenerCaPath, acmeDnsServer: acme.dnsServer, acmeDnsManagementUrl: acme.dnsManagementUrl } : {}),
    });
  } catch (err) {
    await standin.close();
    await metadata?.close();
    await packages?.close();
    await acme?.stop();
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    instance,
    apiUrl: standin.endpoint,
    controlUrl: standin.url,
    token,
    agentUrl,
    machines,
    balancers,
    certificates,
    ...(acme ? { acme } : {}),
    metadata,
    droplet: (id) => machines.get(id),
    stop: () =>
      (stopped ??= (async () => {
        await standin.close();
        await machines.destroyAll();
        await metadata.close();
        await balancers.destroyAll();
        await packages?.close();
        await acme?.stop();
        await labDown(instance);
      })()),
  };
}

