import { createHmac, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  BOOTSTRAP_CONTROLLER_PROOF_PREFIX,
  BOOTSTRAP_PATHS,
  BOOTSTRAP_PROOF_HEADER,
  BootstrapStatus,
  PlumbError,
} from '@plumb/shared';
import { connectTls, httpsOver, parseJson, peerFingerprint, type AgentAddress, type HttpAnswer } from './client.js';
import type { AgentPackage } from './package.js';

/**
 * The controller's side of the droplet's bootstrap (cloud-init/bootstrap.py), which holds the
 * agent's port until the agent runs. Both sides prove they hold the droplet's enrolment secret,
 * each with an HMAC bound to the certificate on this very connection.
 */

/** What answered on the agent's port: nothing yet, the bootstrap (with its status), or the agent. */
export type Probe = { kind: 'silent'; reason: string } | { kind: 'bootstrap'; status: BootstrapStatus } | { kind: 'agent' };

const hmac = (secretHex: string, message: string) => createHmac('sha256', Buffer.from(secretHex, 'hex')).update(message).digest();

const controllerProof = (secretHex: string, fingerprint: string) => hmac(secretHex, BOOTSTRAP_CONTROLLER_PROOF_PREFIX + fingerprint).toString('hex');

/** The bootstrap's status, once it has shown it holds the secret for the certificate it serves. */
function checkedStatus(host: string, answer: HttpAnswer, secretHex: string): BootstrapStatus {
  if (answer.status === 401) {
    throw new PlumbError('BOOTSTRAP_REFUSED', `the droplet at ${host} refused plumb's proof of its enrolment secret`, 'the address may belong to another droplet now: destroy this one and provision again');
  }
  const parsed = BootstrapStatus.safeParse(parseJson(answer.body));
  if (answer.status !== 200 || !parsed.success) {
    throw new PlumbError('BOOTSTRAP_FAILED', `the droplet's bootstrap at ${host} answered HTTP ${answer.status}: ${answer.body.slice(0, 300)}`);
  }
  const { fingerprint, proof } = parsed.data;
  if (fingerprint !== answer.fingerprint || !timingSafeEqual(hmac(secretHex, fingerprint), Buffer.from(proof, 'hex'))) {
    throw new PlumbError('ENROLMENT_PROOF', `the droplet at ${host} could not prove it is the droplet plumb created (bad bootstrap proof)`, 'do not use this droplet: destroy it and provision again');
  }
  return parsed.data;
}

/** Asks the agent's port who is there; a connection that fails is `silent` (still booting). */
export async function probe(address: AgentAddress, secretHex: string): Promise<Probe> {
  let answer: HttpAnswer;
  try {
    const socket = await connectTls(address, null);
    answer = await httpsOver(socket, 'GET', BOOTSTRAP_PATHS.status, { [BOOTSTRAP_PROOF_HEADER]: controllerProof(secretHex, peerFingerprint(socket)) });
  } catch (err) {
    return { kind: 'silent', reason: (err as Error).message };
  }
  // The agent has no bootstrap paths: its 404 means the bootstrap has handed the port over.
  if (answer.status === 404) return { kind: 'agent' };
  return { kind: 'bootstrap', status: checkedStatus(address.host, answer, secretHex) };
}

/** Sends the agent package to the bootstrap pinned at `fingerprint`; it checks size and sha512 and installs it. */
export async function uploadPackage(address: AgentAddress, fingerprint: string, secretHex: string, pkg: AgentPackage): Promise<BootstrapStatus> {
  const socket = await connectTls(address, fingerprint);
  const answer = await httpsOver(
    socket,
    'PUT',
    BOOTSTRAP_PATHS.package,
    { [BOOTSTRAP_PROOF_HEADER]: controllerProof(secretHex, fingerprint), 'content-type': 'application/gzip', 'content-length': String(pkg.bytes) },
    createReadStream(pkg.tarballPath),
  );
  if (answer.status === 400 || answer.status === 500) {
    const reason = (parseJson(answer.body) as { message?: unknown } | undefined)?.message;
    throw new PlumbError('AGENT_PACKAGE_REFUSED', `the droplet refused the agent package: ${typeof reason === 'string' ? reason : answer.body.slice(0, 300)}`, 'run npm run build, or reinstall plumb, and provision again');
  }
  return checkedStatus(address.host, answer, secretHex);
}
