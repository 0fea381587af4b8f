import { z } from 'zod';
import { DropletUuid, Fingerprint } from './names.js';

/**
 * Every message between the controller and the agent, defined once. Both ends parse what they
 * receive with these schemas; the TypeScript types are inferred from them.
 */

/** HTTP paths on the agent. */
export const AGENT_PATHS = {
  /** WebSocket upgrade; the controller's token rides in `Authorization: Bearer`. */
  socket: '/v1/socket',
  /** One-time enrolment (POST, token required): the agent proves who it is. */
  enrol: '/v1/enrol',
  /** Unauthenticated liveness: 200 "ok" (says nothing about the droplet). */
  live: '/v1/live',
} as const;

/** The controller's key, as the agent is told to trust it (cloud-init config). */
export const ControllerKey = z.object({
  /** Key id: the `kid` header of its tokens. */
  kid: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  /** Ed25519 public key as a JWK (`kty: OKP, crv: Ed25519, x`). */
  jwk: z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().regex(/^[A-Za-z0-9_-]{43}$/) }),
});
export type ControllerKey = z.infer<typeof ControllerKey>;

/** The agent's configuration file, written by cloud-init (`/etc/plumb-agent/config.json`). */
export const AgentConfig = z.object({
  dropletUuid: DropletUuid,
  dropletName: z.string(),
  port: z.number().int().min(1).max(65535),
  /** Address to listen on; all interfaces unless set. */
  host: z.string().optional(),
  controllerKeys: z.array(ControllerKey).min(1),
  /** Hex of the one-time 128-bit secret; the agent forgets it once enrolled. */
  enrolmentSecret: z.string().regex(/^[0-9a-f]{32}$/).optional(),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

/** The agent's answer to a successful enrolment. */
export const EnrolResult = z.object({
  /** SHA-256 of the certificate the agent serves. */
  fingerprint: Fingerprint,
  /** HMAC-SHA256(enrolment secret, fingerprint), hex. */
  proof: z.string().regex(/^[0-9a-f]{64}$/),
});
export type EnrolResult = z.infer<typeof EnrolResult>;

export const CloudInitStatus = z.object({
  /** cloud-init's own words: not started, running, done, error, disabled, degraded done. */
  status: z.string(),
  /** Module stage it is in while running, e.g. `modules-final`. */
  stage: z.string().nullable(),
  errors: z.array(z.string()),
});
export type CloudInitStatus = z.infer<typeof CloudInitStatus>;

export const SwapFacts = z.object({
  path: z.string(),
  bytes: z.number().int().nonnegative(),
  /** False in the lab: a container cannot switch swap on. */
  enabled: z.boolean(),
});

/** What the agent says first on every socket. */
export const Hello = z.object({
  type: z.literal('hello'),
  agentVersion: z.string(),
  dropletUuid: DropletUuid,
  hostname: z.string(),
  enrolled: z.boolean(),
  uptimeSeconds: z.number(),
  cloudInit: CloudInitStatus,
  swap: SwapFacts.nullable(),
});
export type Hello = z.infer<typeof Hello>;

/** Controller to agent: one request, answered once by id. */
export const Request = z.discriminatedUnion('type', [
  z.object({ id: z.number().int().nonnegative(), type: z.literal('facts') }),
  z.object({ id: z.number().int().nonnegative(), type: z.literal('cloud-init-wait'), timeoutMs: z.number().int().positive().max(3_600_000) }),
]);
export type Request = z.infer<typeof Request>;

export const WireError = z.object({ code: z.string(), message: z.string(), hint: z.string().optional() });
export type WireError = z.infer<typeof WireError>;

/** Agent to controller: answers, and events pushed as they happen. */
export const AgentMessage = z.discriminatedUnion('type', [
  Hello,
  z.object({ type: z.literal('result'), id: z.number().int(), result: z.unknown() }),
  z.object({ type: z.literal('error'), id: z.number().int(), error: WireError }),
  z.object({ type: z.literal('cloud-init'), cloudInit: CloudInitStatus }),
]);
export type AgentMessage = z.infer<typeof AgentMessage>;
