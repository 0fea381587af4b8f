import * as z from 'zod';
import { lazySchema } from './lazy.js';
import { ApiName, DomainName, GroupName, RPackageName, RPackageVersion, JournalSince, KeepReleases, LogLines, WorkerCount, DropletUuid, Email, EnvKey, EnvValue, ENTRYPOINTS, Fingerprint, HttpUrl, MemoryLimit, ReleaseId, UrlPath } from './names.js';
import { BUNDLE_MAX_ENTRIES, BUNDLE_PATH_MAX_CHARS, EXPORT_CHUNK_BYTES, CONTROLLER_FEATURES_MAX, CONTROLLER_KEYS_MAX, DRAIN_TIMEOUT_MAX_MS, HTTPS_MAX_DOMAINS, LEGACY_APIS_MAX, R_PACKAGES_MAX, SECRETS_MAX } from './limits.js';
import { AgentVersion } from './version.js';

/**
 * Every message between the controller and the agent, defined once. Both ends parse what they
 * receive with these schemas; the TypeScript types are inferred from them. Each is built on first
 * use (lazySchema): a command builds the few it parses with, the CLI never the agent's requests.
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

/**
 * HTTP paths on the droplet's bootstrap (cloud-init/bootstrap.py), which holds the agent's port
 * from cloud-init's first stage until the agent it installed starts. Every request carries
 * `BOOTSTRAP_PROOF_HEADER`: the controller's proof that it holds the enrolment secret.
 */
export const BOOTSTRAP_PATHS = {
  /** GET: how the droplet is doing (BootstrapStatus). */
  status: '/v1/bootstrap',
  /** PUT: the agent package (exactly its size, checked against the sha512 in user-data). */
  package: '/v1/bootstrap/package',
} as const;
export const BOOTSTRAP_PROOF_HEADER = 'x-plumb-proof';
/**
 * What the controller's proof is an HMAC of (key: the enrolment secret), before the fingerprint
 * of the certificate the bootstrap serves. Distinct from the agent's enrolment proof (HMAC of the
 * bare fingerprint), so neither side can replay the other's.
 */
export const BOOTSTRAP_CONTROLLER_PROOF_PREFIX = 'plumb-controller ';

/** What the bootstrap is doing; `failed` carries `error`. */
export const BootstrapStage = lazySchema(() => z.enum(['waiting-for-package', 'downloading', 'installing', 'waiting-for-node', 'starting-agent', 'failed']));
export type BootstrapStage = z.infer<typeof BootstrapStage>;

/** The non-secret facts about the agent package the bootstrap checks (user-data, /etc/plumb-agent/package.json). */
export const BootstrapPackage = lazySchema(() => z.object({
  version: z.string().regex(/^[0-9A-Za-z.+-]{1,64}$/),
  sha512: z.string().regex(/^[0-9a-f]{128}$/),
  bytes: z.number().int().positive(),
  /** A mirror the droplet downloads the package from itself (--agent-url); else it waits for an upload. */
  url: z.string().url().optional(),
}));
export type BootstrapPackage = z.infer<typeof BootstrapPackage>;

/** What a person calls a controller key (`plumb keys add --name alice`): shown in `plumb keys list`. */
export const KeyName = lazySchema(() => z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'a key name is 1 to 64 letters, digits, ".", "_", "@" or "-", e.g. alice or ci'));

/** A controller key id: the `kid` header of its tokens. */
export const KeyId = lazySchema(() => z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, 'a key id is 8 to 64 letters, digits, "_" or "-"'));

/** The controller's key, as the agent is told to trust it (cloud-init config, `plumb keys add`). */
export const ControllerKey = lazySchema(() => z.object({
  kid: KeyId,
  /** Ed25519 public key as a JWK (`kty: OKP, crv: Ed25519, x`). */
  jwk: z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().regex(/^[A-Za-z0-9_-]{43}$/) }),
  /** Given by `plumb keys add --name`; the provisioning key has none. */
  name: KeyName.optional(),
  addedAt: z.string().optional(),
}));
export type ControllerKey = z.infer<typeof ControllerKey>;

/** The agent's configuration file, written by cloud-init (`/etc/plumb-agent/config.json`). */
export const AgentConfig = lazySchema(() => z.object({
  dropletUuid: DropletUuid,
  dropletName: z.string(),
  port: z.number().int().min(1).max(65535),
  /** Address to listen on; all interfaces unless set. */
  host: z.string().optional(),
  controllerKeys: z.array(ControllerKey).min(1).max(CONTROLLER_KEYS_MAX),
  /** Hex of the one-time 128-bit secret; the agent forgets it once enrolled. */
  enrolmentSecret: z.string().regex(/^[0-9a-f]{32}$/).optional(),
}));
export type AgentConfig = z.infer<typeof AgentConfig>;

/** The agent's answer to a successful enrolment. */
export const EnrolResult = lazySchema(() => z.object({
  /** SHA-256 of the certificate the agent serves. */
  fingerprint: Fingerprint,
  /** HMAC-SHA256(enrolment secret, fingerprint), hex. */
  proof: z.string().regex(/^[0-9a-f]{64}$/),
}));
export type EnrolResult = z.infer<typeof EnrolResult>;

export const CloudInitStatus = lazySchema(() => z.object({
  /** cloud-init's own words: not started, running, done, error, disabled, degraded done. */
  status: z.string(),
  /** Module stage it is in while running, e.g. `modules-final`. */
  stage: z.string().nullable(),
  errors: z.array(z.string()),
}));
export type CloudInitStatus = z.infer<typeof CloudInitStatus>;

/** The bootstrap's answer to GET BOOTSTRAP_PATHS.status. */
export const BootstrapStatus = lazySchema(() => z.object({
  stage: BootstrapStage,
  /** Why the bootstrap gave up (stage `failed`). */
  error: z.string().nullable(),
  /** SHA-256 of the certificate it serves: the agent's own, made the same way (the pin). */
  fingerprint: Fingerprint,
  /** HMAC-SHA256(enrolment secret, fingerprint), hex: as the agent's enrolment proof. */
  proof: z.string().regex(/^[0-9a-f]{64}$/),
  cloudInit: CloudInitStatus,
  /** The last lines of /var/log/cloud-init-output.log. */
  output: z.array(z.string()),
}));
export type BootstrapStatus = z.infer<typeof BootstrapStatus>;

export const SwapFacts = lazySchema(() => z.object({
  path: z.string(),
  bytes: z.number().int().nonnegative(),
  /** False in the lab: a container cannot switch swap on. */
  enabled: z.boolean(),
}));

/**
 * How the last agent upgrade went, as the agent reports it in its hello: `pending` while the new
 * agent has not confirmed, then `confirmed`, or `rolled-back` with why and the new agent's log.
 */
export const UpgradeRecord = lazySchema(() => z.object({
  id: z.string().regex(/^[0-9a-f]{8,32}$/),
  from: AgentVersion,
  to: AgentVersion,
  startedAt: z.string(),
  outcome: z.enum(['pending', 'confirmed', 'rolled-back']),
  finishedAt: z.string().nullable(),
  reason: z.string().nullable(),
  log: z.array(z.string()),
}));
export type UpgradeRecord = z.infer<typeof UpgradeRecord>;

/**
 * The part of the hello every version of plumb sends and reads, whatever else changes: a
 * controller reads it first, so an agent of another protocol gets "run plumb upgrade", not a
 * parse error. Agents from before protocol versions send no `protocol` (0).
 */
export const HelloHead = lazySchema(() => z.object({
  type: z.literal('hello'),
  agentVersion: z.string(),
  protocol: z.number().int().nonnegative().default(0),
  /** The last `plumb upgrade` of this agent, or null when it never was upgraded. */
  upgrade: UpgradeRecord.nullable().default(null),
}));
export type HelloHead = z.infer<typeof HelloHead>;

const Id = lazySchema(() => z.number().int().nonnegative());

/**
 * What an agent can do beyond its protocol version, named in its hello: a controller uses a
 * feature only when the agent lists it, so agents from before it keep working.
 */
export const AGENT_FEATURES = {
  /** A deploy may carry its file list (`manifest`); the agent answers `upload-need` and the bundle holds only those files. */
  deltaUpload: 'delta-upload',
  /** `secrets` and `secrets-set` requests (plumb secrets). */
  secrets: 'secrets',
  /** `export`: the live release of an API as a bundle, so a controller can copy it to another droplet of its group. */
  exportRelease: 'export-release',
  /** Deploys and rollbacks may carry a `group` mark, kept with the API and shown by `status` (GroupMark). */
  groupMarks: 'group-marks',
  /** A deploy's `group` may carry `kind: rollback`: a copy (group sync) of a release a group rollback put live keeps that mark. */
  copiedMarks: 'copied-marks',
  /** A deploy's `spare` may be `'auto'` (SparePolicy), the default of new APIs; status shows each API's policy and why it has no spare. */
  spareAuto: 'spare-auto',
} as const;

/**
 * What a controller can take beyond its protocol version, named in the upgrade request of its socket
 * (header CONTROLLER_FEATURES_HEADER, comma-separated): an agent relies on one only when the
 * controller names it, so controllers from before it keep working.
 */
export const CONTROLLER_FEATURES = {
  /** Events of any kind, a newer agent's too (AgentEvent); without it an agent sends only FIRST_EVENT_KINDS. */
  anyEventKind: 'any-event-kind',
} as const;
export const CONTROLLER_FEATURES_HEADER = 'plumb-controller-features';

/** The features named in a socket's upgrade request (none from a controller from before them). */
export function controllerFeatures(header: string | string[] | undefined): string[] {
  return [header ?? []].flat().flatMap((h) => h.split(',')).map((f) => f.trim()).filter((f) => f !== '').slice(0, CONTROLLER_FEATURES_MAX);
}

/** What the agent says first on every socket. */
export const Hello = lazySchema(() => HelloHead.extend({
  protocol: z.number().int().nonnegative(),
  dropletUuid: DropletUuid,
  hostname: z.string(),
  enrolled: z.boolean(),
  uptimeSeconds: z.number(),
  cloudInit: CloudInitStatus,
  swap: SwapFacts.nullable(),
  upgrade: UpgradeRecord.nullable(),
  /** AGENT_FEATURES values; agents from before features send none. */
  features: z.array(z.string().max(64)).max(64).default([]),
}));
export type Hello = z.infer<typeof Hello>;

/**
 * Upgrade: this request, then the agent package (npm's .tgz) as binary frames, then `upload-end`.
 * Like the hello's head, its shape never changes, so any plumb can upgrade any agent.
 */
export const UpgradeRequest = lazySchema(() => z.object({
  id: Id,
  type: z.literal('upgrade'),
  version: AgentVersion,
  /** sha512 of the package, hex: the agent installs nothing else. */
  sha512: z.string().regex(/^[0-9a-f]{128}$/),
  /** Allow a version older than the running one. */
  force: z.boolean(),
}));
export type UpgradeRequest = z.infer<typeof UpgradeRequest>;

/** The answer to `upgrade` once the new agent is unpacked and checked, just before the agent restarts into it. */
export const UpgradeResult = lazySchema(() => z.object({
  id: UpgradeRecord.shape.id,
  from: AgentVersion,
  to: AgentVersion,
  /** `restarting`: the new agent starts now and must confirm within confirmTimeoutMs; `up-to-date`: nothing to do. */
  outcome: z.enum(['restarting', 'up-to-date']),
  confirmTimeoutMs: z.number().int(),
}));
export type UpgradeResult = z.infer<typeof UpgradeResult>;

/** A controller key as `plumb keys list` shows it. */
export const KeyInfo = lazySchema(() => z.object({
  kid: KeyId,
  name: KeyName.nullable(),
  x: ControllerKey.shape.jwk.shape.x,
  addedAt: z.string().nullable(),
  /** The key that signed this request's token. */
  caller: z.boolean(),
}));
export type KeyInfo = z.infer<typeof KeyInfo>;
export const KeysResult = lazySchema(() => z.object({ keys: z.array(KeyInfo), changed: z.boolean() }));
export type KeysResult = z.infer<typeof KeysResult>;

const DrainTimeoutMs = lazySchema(() => z.number().int().min(0).max(DRAIN_TIMEOUT_MAX_MS));
/** For a switch of workers (deploy, rollback, scale, restart): wait for the old ones to drain and stop. */
const Wait = lazySchema(() => z.boolean().default(false));

/**
 * R packages (docs/r-packages.md). A package an API needs, as the controller found it: in
 * renv.lock, in a DESCRIPTION, or in the code (library(), pkg::fn, a plumber feature).
 */
export const RPackageNeed = lazySchema(() => z.object({
  name: RPackageName,
  /** `==`: renv.lock, or DESCRIPTION's `(== x)`; `>=`: DESCRIPTION's `(>= x)` or `(> x)`; null: any version. */
  version: z.object({ op: z.enum(['==', '>=']), version: RPackageVersion }).nullable(),
  /** Where it was found, for the person reading: a file, or the plumber feature that needs it. */
  reason: z.string().max(200),
}));
export type RPackageNeed = z.infer<typeof RPackageNeed>;

/** What a deploy (or `plumb deps`) asks the agent to make present. */
export const PackagesSpec = lazySchema(() => z.object({
  needs: z.array(RPackageNeed).max(R_PACKAGES_MAX),
  /** CRAN-like repository for source builds; null: the API's (an earlier --repo), else the droplet's, else CRAN. */
  repo: HttpUrl.nullable(),
  /** CRAN-like repository of binaries built for the droplet's Debian, tried before source builds; null: the API's, else the droplet's, else none. */
  binaryRepo: HttpUrl.nullable(),
  /** Versions other than renv.lock's (or below DESCRIPTION's minimum) fail the deploy instead of warning. */
  strictVersions: z.boolean(),
  /** The R version renv.lock was made with: a different major.minor than the droplet's is a warning. */
  rVersion: RPackageVersion.nullable().default(null),
}));
export type PackagesSpec = z.infer<typeof PackagesSpec>;

/**
 * Where a package on the droplet came from: Debian's archive (apt, into R's system library), a
 * binary repository or a source build (both into the API's own library), or `local`: found in
 * /usr/local/lib/R/site-library, put there by hand.
 */
export const R_PACKAGE_SOURCES = ['debian', 'repository', 'source', 'local'] as const;
export const RPackageSource = lazySchema(() => z.enum(R_PACKAGE_SOURCES));
export type RPackageSource = z.infer<typeof RPackageSource>;

export const InstalledRPackage = lazySchema(() => z.object({
  name: RPackageName,
  version: z.string(),
  source: RPackageSource,
  /** The R library it is loaded from. */
  library: z.string(),
}));
export type InstalledRPackage = z.infer<typeof InstalledRPackage>;

/** How each package would get onto the droplet (`plumb deps`): already there, or which step installs it. */
export const PackagePlanItem = lazySchema(() => z.object({
  name: RPackageName,
  action: z.enum(['present', 'debian', 'repository', 'source', 'missing']),
  /** present: the installed version; otherwise the version that step would install (null: unknown). */
  version: z.string().nullable(),
  /** present: its library; debian: the Debian package; repository/source: the repository's URL; missing: why. */
  from: z.string(),
  /** Needed by another package, not asked for by the API itself. */
  dependency: z.boolean(),
  reason: z.string(),
}));
export type PackagePlanItem = z.infer<typeof PackagePlanItem>;

export const PackagesPlan = lazySchema(() => z.object({
  items: z.array(PackagePlanItem),
  /** Version differences and other things worth knowing (renv.lock's R version, a GitHub source, …). */
  warnings: z.array(z.string()),
  /** R on the droplet, e.g. 4.5.0. */
  rVersion: z.string(),
}));
export type PackagesPlan = z.infer<typeof PackagesPlan>;

/** What a deploy did about R packages; the agent's own account, so "installed nothing" can be checked. */
export const PackagesReport = lazySchema(() => z.object({
  /** Every package the API asked for, as it is now on the droplet. */
  packages: z.array(InstalledRPackage),
  /** What this deploy installed, dependencies included: empty when everything was there already. */
  installed: z.array(InstalledRPackage),
  warnings: z.array(z.string()),
  rVersion: z.string(),
  /**
   * The needs and every R library were as at this API's last deploy, so R was not asked again
   * and `packages` is what it answered then (absent from older agents, which always asked).
   */
  cached: z.boolean().optional(),
  tookMs: z.number(),
}));
export type PackagesReport = z.infer<typeof PackagesReport>;

/**
 * One file of a bundle in a deploy's file list: its path (the agent checks it with the rules of
 * tar entries), sha256 of its content, size, and whether it is executable (the only mode bit kept).
 */
export const BundleFile = lazySchema(() => z.object({
  path: z.string().min(1).max(BUNDLE_PATH_MAX_CHARS),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  executable: z.boolean(),
}));
export type BundleFile = z.infer<typeof BundleFile>;

/**
 * A group deploy or rollback as the controller sends it: the group's generation, one more than
 * the highest any member holds, so the newest group change is found without comparing clocks.
 */
export const GroupChange = lazySchema(() => z.object({ name: GroupName, generation: z.number().int().positive() }));
export type GroupChange = z.infer<typeof GroupChange>;

/**
 * The last group change of an API, kept by its agent (so any controller can read it): what it
 * switched from and to. `rollback --group` undoes the members holding the newest `deploy` mark.
 */
export const GroupMark = lazySchema(() => GroupChange.extend({ kind: z.enum(['deploy', 'rollback']), from: ReleaseId.nullable(), to: ReleaseId }));
export type GroupMark = z.infer<typeof GroupMark>;

/**
 * Deploy: this request, then the bundle as binary frames, then `upload-end`. With a `manifest`
 * (agents with AGENT_FEATURES.deltaUpload), the agent first answers `upload-need` with the files
 * it has in none of the API's kept releases, and the bundle holds only those. A setting left out
 * keeps the API's current one on a redeploy (the default on a first deploy), so `plumb deploy`
 * without --workers does not undo a `plumb scale`.
 */
export const DeployRequest = lazySchema(() => z.object({
  id: Id,
  type: z.literal('deploy'),
  name: ApiName,
  /** Default /NAME. */
  path: UrlPath.optional(),
  /** Serve this API at `/` too (false leaves the forward as it is). */
  forward: z.boolean(),
  /** Replaces the API's whole environment when given. */
  env: z.record(EnvKey, EnvValue).optional(),
  workers: WorkerCount.optional(),
  /** A path that must answer 2xx; null: any answer below 500 means R and the router are up. */
  healthPath: UrlPath.nullable().optional(),
  healthTimeoutMs: z.number().int().min(1000).max(30 * 60_000).optional(),
  /** systemd MemoryMax= for each worker, e.g. 512M; null: no limit. */
  memoryMax: MemoryLimit.nullable().optional(),
  /** Releases kept on the droplet for rollback (the live one always is). */
  keepReleases: KeepReleases.optional(),
  /** How long the previous release's workers may finish requests in flight before they are stopped. */
  drainTimeoutMs: DrainTimeoutMs.optional(),
  /**
   * The API's warm spare (docs/architecture.md): true keeps one (--spare), false none (--no-spare),
   * 'auto' one where it pays (agents with AGENT_FEATURES.spareAuto); absent: as it was (auto at
   * first; off at first on agents from before auto).
   */
  spare: z.union([z.boolean(), z.literal('auto')]).optional(),
  /** Answer once the previous workers have stopped, not as soon as traffic switched. */
  wait: Wait,
  /** The API's R packages, installed before the new release starts; absent (--no-deps): none checked. */
  packages: PackagesSpec.optional(),
  /** Every file of the release (see above); absent: the bundle is the whole release. */
  manifest: z.array(BundleFile).max(BUNDLE_MAX_ENTRIES).optional(),
  /**
   * Part of a group deploy: the agent keeps the mark with the API once the release is live. A copy
   * by `group sync` carries its source's mark, whose `kind` may be `rollback` (agents with
   * AGENT_FEATURES.copiedMarks; absent: `deploy`).
   */
  group: GroupChange.extend({ kind: GroupMark.shape.kind.optional() }).optional(),
}));
export type DeployRequest = z.infer<typeof DeployRequest>;

/** Controller to agent: one request, answered once by id (a result or an error). */
export const Request = lazySchema(() => z.discriminatedUnion('type', [
  z.object({ id: Id, type: z.literal('facts') }),
  z.object({ id: Id, type: z.literal('cloud-init-wait'), timeoutMs: z.number().int().positive().max(3_600_000) }),
  DeployRequest,
  /** Ends the bundle of the deploy with this id: how many bytes were sent, so a cut stream is noticed. */
  z.object({ id: Id, type: z.literal('upload-end'), bytes: z.number().int().nonnegative() }),
  z.object({ id: Id, type: z.literal('remove'), name: ApiName, keepFiles: z.boolean() }),
  z.object({ id: Id, type: z.literal('forward'), name: ApiName }),
  z.object({ id: Id, type: z.literal('unforward') }),
  /** New workers for the live release next to the old ones, then the same switch and drain as a deploy. */
  z.object({ id: Id, type: z.literal('restart'), name: ApiName, wait: Wait }),
  z.object({ id: Id, type: z.literal('status') }),
  z.object({
    id: Id,
    type: z.literal('logs'),
    name: ApiName,
    lines: LogLines,
    /** journalctl's --since syntax, checked by the agent: e.g. "10 min ago", "2026-11-25 10:00". */
    since: JournalSince.nullable(),
    follow: z.boolean(),
  }),
  /** Let's Encrypt (or the configured ACME server) for these domains; HTTP then redirects to HTTPS. */
  z.object({
    id: Id,
    type: z.literal('https'),
    domains: z.array(DomainName).min(1).max(HTTPS_MAX_DOMAINS),
    email: Email,
    agreeTos: z.literal(true),
    /** ACME directory URL. */
    server: HttpUrl,
    /** Renew even if the certificate is still valid. */
    force: z.boolean(),
  }),
  /** An API's releases, oldest first, and which one is live. */
  z.object({ id: Id, type: z.literal('releases'), name: ApiName }),
  /** Switch back to an earlier release (the previous one unless `to`), through the same health gate. */
  z.object({ id: Id, type: z.literal('rollback'), name: ApiName, to: ReleaseId.nullable(), wait: Wait, group: GroupChange.optional() }),
  /** Change the number of R workers without downtime. */
  z.object({ id: Id, type: z.literal('scale'), name: ApiName, workers: WorkerCount, wait: Wait }),
  /** Receive events (up, down, restarted, deploy, …) as they happen, until the socket closes. */
  z.object({
    id: Id,
    type: z.literal('watch'),
    /** First replay the stored events after this id (a watch that reconnects misses nothing). */
    sinceEventId: z.number().int().nonnegative().nullable().default(null),
  }),
  /** Where the agent POSTs events (API down/up, repeated restarts, certificate expiry); null turns it off. */
  z.object({ id: Id, type: z.literal('alerts'), webhook: HttpUrl.nullable() }),
  /** Opens or closes SSH (22/tcp) in ufw; 80, 443 (with HTTPS) and the agent's port stay open. */
  z.object({ id: Id, type: z.literal('firewall'), ssh: z.enum(['open', 'close']) }),
  /** Removes the agent (its files, unit, state, port in ufw) once this is answered; the APIs keep serving. */
  z.object({ id: Id, type: z.literal('uninstall') }),
  /**
   * `plumb adopt --import`: plumber's old do_deploy_api() APIs of these names now serve as plumb
   * APIs, so their nginx site (do_provision's `plumber`) goes and their units `plumber-NAME` stop.
   */
  z.object({ id: Id, type: z.literal('retire-legacy'), names: z.array(ApiName).min(1).max(LEGACY_APIS_MAX) }),
  UpgradeRequest,
  /** The controller keys this droplet trusts. */
  z.object({ id: Id, type: z.literal('keys') }),
  /** Trust one more controller key (a teammate's, CI's); adding a trusted key again changes nothing. */
  z.object({ id: Id, type: z.literal('keys-add'), key: ControllerKey.required({ name: true }) }),
  /** Stop trusting a key (by name or id): its open sockets are closed. Not the caller's own, not the last. */
  z.object({ id: Id, type: z.literal('keys-revoke'), key: z.union([KeyName, KeyId]) }),
  /** What installing these packages would do on this droplet (`plumb deps`), without doing it. */
  z.object({ id: Id, type: z.literal('packages-plan'), name: ApiName.nullable(), packages: PackagesSpec }),
  /** The R packages of an API's live release: version and where each came from. */
  z.object({ id: Id, type: z.literal('packages'), name: ApiName }),
  /** The droplet's default CRAN-like repositories (for APIs deployed without --repo / --binary-repo); a field left out is kept, null resets it. */
  z.object({ id: Id, type: z.literal('repos'), repo: HttpUrl.nullable().optional(), binaryRepo: HttpUrl.nullable().optional() }),
  /** The names of an API's secrets; their values never leave the droplet. */
  z.object({ id: Id, type: z.literal('secrets'), name: ApiName }),
  /**
   * Sets and unsets an API's secrets (environment variables kept apart from --env, so a deploy
   * does not replace them), then, if any value changed, restarts its workers as `restart` does.
   */
  z.object({
    id: Id,
    type: z.literal('secrets-set'),
    name: ApiName,
    set: z.record(EnvKey, EnvValue).refine((r) => Object.keys(r).length <= SECRETS_MAX, `at most ${SECRETS_MAX} secrets`).default({}),
    unset: z.array(EnvKey).max(SECRETS_MAX).default([]),
    wait: Wait,
  }),
  /**
   * The live release of an API as a gzip tar in `bundle-chunk` messages, then its settings: what a
   * controller needs to give another droplet of the group the same release (`plumb group sync`).
   */
  z.object({ id: Id, type: z.literal('export'), name: ApiName }),
  /** Stops the running request with this id (a followed log). */
  z.object({ id: Id, type: z.literal('cancel') }),
]));
export type Request = z.infer<typeof Request>;
/** A request as the controller writes it (defaults not yet filled in). */
export type RequestInput = z.input<typeof Request>;

export const WireError = lazySchema(() => z.object({
  code: z.string(),
  message: z.string(),
  hint: z.string().optional(),
  /** For a failed deploy: the step that failed and the new release's last log lines. */
  step: z.string().optional(),
  log: z.array(z.string()).optional(),
}));
export type WireError = z.infer<typeof WireError>;

/**
 * The previous workers after a switch: they stop once no request is in flight on them, at the
 * latest after `timeoutMs`. `stopped` is true when the answer waited for that (--wait); `cut` counts
 * the connections still open when the timeout stopped a worker (also in the event log).
 */
export const DrainReport = lazySchema(() => z.object({ ports: z.array(z.number().int()), timeoutMs: z.number().int(), stopped: z.boolean(), cut: z.number().int() }));
export type DrainReport = z.infer<typeof DrainReport>;

export const DeployResult = lazySchema(() => z.object({
  name: ApiName,
  path: UrlPath,
  release: ReleaseId,
  entrypoint: z.enum(ENTRYPOINTS),
  ports: z.array(z.number().int()),
  forward: z.boolean(),
  files: z.number().int(),
  bytes: z.number().int(),
  /** Files taken from a kept release (hard link or copy) rather than from the bundle. */
  reusedFiles: z.number().int().nonnegative().default(0),
  /** null: deployed with --no-deps. */
  packages: PackagesReport.nullable(),
  tookMs: z.number(),
  drain: DrainReport,
}));
export type DeployResult = z.infer<typeof DeployResult>;

/** A certificate nginx serves, as read from its file on the droplet (certbot's lineage NAME). */
export const CertificateInfo = lazySchema(() => z.object({
  /** certbot's --cert-name; its files are under /etc/letsencrypt/live/NAME/. */
  name: DomainName,
  /** The names nginx serves it for (the HTTPS server's server_name). */
  domains: z.array(DomainName),
  /** The certificate's notAfter (ISO 8601). */
  expiresAt: z.string(),
  /** Upper-case hex, as openssl prints it. */
  serial: z.string(),
  issuer: z.string(),
}));
export type CertificateInfo = z.infer<typeof CertificateInfo>;

/** The answer to `https`: the certificate now served, and what changed on the way. */
export const HttpsResult = lazySchema(() => z.object({
  certificate: CertificateInfo,
  /** `issued`: certbot got a new certificate; `kept`: the one there was still valid (no --force). */
  outcome: z.enum(['issued', 'kept']),
  /** True when this request opened 443 in ufw (false: it was open already). */
  opened443: z.boolean(),
  /** Every certificate the droplet serves now, this one included. */
  certificates: z.array(CertificateInfo),
  tookMs: z.number(),
}));
export type HttpsResult = z.infer<typeof HttpsResult>;

/** Results of the smaller operations, one schema each. */
export const RemoveResult = lazySchema(() => z.object({ name: ApiName, keptFiles: z.boolean(), wasForwarded: z.boolean() }));
export type RemoveResult = z.infer<typeof RemoveResult>;
export const ForwardResult = lazySchema(() => z.object({ forward: ApiName }));
export type ForwardResult = z.infer<typeof ForwardResult>;
export const UnforwardResult = lazySchema(() => z.object({ forward: z.null(), was: ApiName.nullable() }));
export type UnforwardResult = z.infer<typeof UnforwardResult>;
export const RestartResult = lazySchema(() => z.object({ name: ApiName, workers: z.number().int(), tookMs: z.number(), drain: DrainReport }));
export type RestartResult = z.infer<typeof RestartResult>;
export const SecretsResult = lazySchema(() => z.object({ name: ApiName, keys: z.array(EnvKey) }));
export type SecretsResult = z.infer<typeof SecretsResult>;
/** `restarted`: false when nothing changed (the workers kept running); then `workers` is 0 and `drain` empty. */
export const SecretsSetResult = lazySchema(() => SecretsResult.extend({ set: z.array(EnvKey), unset: z.array(EnvKey), restarted: z.boolean(), workers: z.number().int(), tookMs: z.number(), drain: DrainReport }));
export type SecretsSetResult = z.infer<typeof SecretsSetResult>;
/**
 * A release's content: sha256 over its files' paths, hashes and executable bits, and its --env
 * (names and values: they change what the code does; secrets are the API's, not the release's,
 * and stay out). Release ids are each droplet's own; the digest is how droplets of a group are
 * seen to run the same code with the same settings.
 */
export const ReleaseDigest = lazySchema(() => z.string().regex(/^[0-9a-f]{64}$/));
export const ReleaseInfo = lazySchema(() => z.object({ id: ReleaseId, createdAt: z.string(), files: z.number().int(), bytes: z.number().int(), live: z.boolean(), digest: ReleaseDigest.nullable().default(null) }));
export type ReleaseInfo = z.infer<typeof ReleaseInfo>;
export const ReleasesResult = lazySchema(() => z.object({ name: ApiName, releases: z.array(ReleaseInfo) }));
export type ReleasesResult = z.infer<typeof ReleasesResult>;
export const RollbackResult = lazySchema(() => z.object({ name: ApiName, from: ReleaseId, to: ReleaseId, tookMs: z.number(), drain: DrainReport }));
export type RollbackResult = z.infer<typeof RollbackResult>;
export const ScaleResult = lazySchema(() => z.object({ name: ApiName, from: z.number().int(), to: z.number().int(), tookMs: z.number(), drain: DrainReport }));
export type ScaleResult = z.infer<typeof ScaleResult>;
/** The droplet's default repositories; null: CRAN for sources, no binary repository. */
export const ReposResult = lazySchema(() => z.object({ repo: HttpUrl.nullable(), binaryRepo: HttpUrl.nullable() }));
export type ReposResult = z.infer<typeof ReposResult>;
export const PackagesResult = lazySchema(() => z.object({ name: ApiName, release: ReleaseId, packages: z.array(InstalledRPackage) }));
export type PackagesResult = z.infer<typeof PackagesResult>;
export const LogsResult = lazySchema(() => z.object({ entries: z.number().int() }));
export type LogsResult = z.infer<typeof LogsResult>;

export const ApiStatus = lazySchema(() => z.object({
  name: ApiName,
  path: UrlPath,
  release: ReleaseId,
  /** systemd's view of the workers: active, activating (restarting), failed, inactive. */
  state: z.string(),
  workers: z.array(z.object({ port: z.number().int(), state: z.string(), pid: z.number().int().nullable(), since: z.string().nullable(), restarts: z.number().int() })),
  /** Workers of an earlier release (or worker set) finishing their requests in flight; stopped by `until` at the latest. */
  draining: z.array(z.object({ port: z.number().int(), release: ReleaseId, until: z.string() })).default([]),
  forwarded: z.boolean(),
  /** When the live release last became live (deploy or rollback; not scale or restart). */
  deployedAt: z.string(),
  /** The names of its secrets (plumb secrets), never their values. */
  secrets: z.array(EnvKey).default([]),
  /** The live release's content (ReleaseDigest); null from agents before it. */
  digest: ReleaseDigest.nullable().default(null),
  /** The API's last group deploy or rollback on this droplet; null: none (or an agent from before marks). */
  group: GroupMark.nullable().default(null),
  /**
   * Its warm spare (deploy --spare); null: none (or an agent from before spares were shown).
   * state: waiting (loaded, ready for the next deploy), starting (loading), restarting (its R
   * process ended and systemd starts it again), or systemd's state of its unit (failed, inactive).
   * restarts above 0: it crashed, and the next deploy starts cold; restartsWhileWaiting: how many of
   * those ended a process that had loaded and waited (the rest ended one still loading; null from
   * agents before it).
   */
  spare: z.object({ port: z.number().int(), state: z.string(), pid: z.number().int().nullable(), restarts: z.number().int(), restartsWhileWaiting: z.number().int().nullable().default(null), rssBytes: z.number().int().nullable() }).nullable().default(null),
  /** Its spare policy (SparePolicy); null from agents before auto. */
  sparePolicy: SparePolicy.nullable().default(null),
  /** No spare: why not (auto's reason: memory, workers, no gain; --no-spare); null: it has one, or one is being decided (behind a deploy, or as the agent starts). */
  spareWhy: z.string().max(200).nullable().default(null),
}));
export type ApiStatus = z.infer<typeof ApiStatus>;

/**
 * When an API keeps a warm spare (docs/architecture.md): `always` after every deploy (--spare),
 * `never` (--no-spare), `auto` when memory allows and it saves at least what it takes
 * (agent ops/spare-policy.ts), the default.
 */
export const SparePolicy = lazySchema(() => z.enum(['always', 'never', 'auto']));
export type SparePolicy = z.infer<typeof SparePolicy>;

/** The policy a deploy request's `spare` asks for (true: --spare, false: --no-spare). */
export const requestedSparePolicy = (spare: boolean | 'auto'): SparePolicy => (spare === 'auto' ? 'auto' : spare ? 'always' : 'never');

/**
 * How a warm spare's restarts read (the deploy's step, plumb status): when they came, since a
 * spare that dies while loading (a package's .onLoad) is another trouble than one killed while it
 * waits (the OOM killer). `whileWaiting` null: not known (an agent from before it).
 */
export function spareCrashes(restarts: number, whileWaiting: number | null): string {
  const times = restarts === 1 ? '' : ` ${restarts} times`;
  if (whileWaiting === null) return `crashed${times}`;
  const waiting = Math.min(whileWaiting, restarts);
  if (waiting === restarts) return `crashed${times} while waiting`;
  if (waiting === 0) return `crashed${times} while loading`;
  return `crashed${times}, ${restarts - waiting} while loading and ${waiting} while waiting`;
}

/** What the agent records about its APIs (docs/health.md), newest last. */
export const EVENT_KINDS = [
  'up', 'down', 'restarted', 'health-failed', 'deploy', 'rollback', 'remove', 'certificate-renewed', 'certificate-expiring',
  'agent-upgraded', 'agent-rolled-back', 'key-added', 'key-revoked', 'state-rebuilt', 'drain-cut', 'operation-cut',
  'routing-restored', 'firewall-restored', 'spare-crashing', 'prune-failed',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/** An event as the agent records it (events.json, its ring): only the kinds this version knows. */
export const RecordedEvent = lazySchema(() => z.object({
  /** Increasing on this droplet, kept across agent restarts. */
  id: z.number().int().positive(),
  time: z.string(),
  kind: z.enum(EVENT_KINDS),
  api: ApiName.nullable(),
  /** The worker's port, for events about one worker. */
  port: z.number().int().nullable(),
  /** For `restarted`: systemd (the R process had exited), the agent (failed checks), or an operator (plumb restart, systemctl). */
  by: z.enum(['systemd', 'agent', 'operator']).nullable(),
  detail: z.string(),
}));
export type RecordedEvent = z.infer<typeof RecordedEvent>;

/**
 * An event as a controller reads it (status, watch, the webhook): a newer agent speaking the same
 * protocol may record a kind this plumb does not know, kept as its string (isEventKind tells).
 */
export const AgentEvent = lazySchema(() => RecordedEvent.extend({ kind: z.string() }));
export type AgentEvent = z.infer<typeof AgentEvent>;

export const isEventKind = (kind: string): kind is EventKind => (EVENT_KINDS as readonly string[]).includes(kind);

/**
 * The kinds every controller of this protocol knows: those of its first version. Controllers from
 * before CONTROLLER_FEATURES.anyEventKind parse kinds strictly, each against the kinds of its own
 * version, and fail `status` on any other.
 */
export const FIRST_EVENT_KINDS = [
  'up', 'down', 'restarted', 'health-failed', 'deploy', 'rollback', 'remove', 'certificate-renewed', 'certificate-expiring',
  'agent-upgraded', 'agent-rolled-back', 'key-added', 'key-revoked',
] as const satisfies readonly EventKind[];

/**
 * An event as a controller that parses kinds strictly takes it: a kind it may not know goes as
 * `health-failed` (the agent saw something go wrong: every later kind is such a thing, a routing
 * or firewall put back, an operation or a drain cut, a crashing spare), its name leading the detail.
 */
export function eventForStrictController<E extends { kind: string; detail: string }>(event: E): E {
  if ((FIRST_EVENT_KINDS as readonly string[]).includes(event.kind)) return event;
  return { ...event, kind: 'health-failed', detail: `${event.kind}: ${event.detail}` };
}

/** The droplet's vital signs, in `status` and sent periodically to a watching controller. */
export const Heartbeat = lazySchema(() => z.object({
  time: z.string(),
  /** The newest event's id when it was taken: a watcher that reconnects asks for what came after. */
  lastEventId: z.number().int().nonnegative(),
  load: z.array(z.number()),
  memory: z.object({ totalBytes: z.number(), availableBytes: z.number() }),
  disk: z.object({ totalBytes: z.number(), freeBytes: z.number() }),
  workers: z.array(
    z.object({
      api: ApiName,
      port: z.number().int(),
      pid: z.number().int().nullable(),
      /** VmRSS of the R process. */
      rssBytes: z.number().int().nullable(),
      uptimeSeconds: z.number().nullable(),
    }),
  ),
  /** Certificates under /etc/letsencrypt/live. */
  certificates: z.array(z.object({ name: z.string(), domains: z.array(z.string()), expiresAt: z.string(), daysLeft: z.number() })),
}));
export type Heartbeat = z.infer<typeof Heartbeat>;

export const StatusResult = lazySchema(() => z.object({
  apis: z.array(ApiStatus),
  forward: ApiName.nullable(),
  hello: Hello,
  load: z.array(z.number()),
  memory: z.object({ totalBytes: z.number(), availableBytes: z.number() }),
  disk: z.object({ totalBytes: z.number(), freeBytes: z.number() }),
  heartbeat: Heartbeat,
  /** The latest events (at most STATUS_EVENTS_MAX), oldest first; the controller shows those it has not shown yet. */
  events: z.array(AgentEvent),
  /** The newest event's id (0 when there is none). */
  lastEventId: z.number().int().nonnegative(),
}));
export type StatusResult = z.infer<typeof StatusResult>;

export const LogEntry = lazySchema(() => z.object({
  /** Microseconds since the epoch, journald's __REALTIME_TIMESTAMP. */
  time: z.number(),
  unit: z.string(),
  priority: z.number().int(),
  message: z.string(),
}));
export type LogEntry = z.infer<typeof LogEntry>;

/** Agent to controller: answers, and events pushed as they happen. */
export const AgentMessage = lazySchema(() => z.discriminatedUnion('type', [
  Hello,
  z.object({ type: z.literal('result'), id: z.number().int(), result: z.unknown() }),
  z.object({ type: z.literal('error'), id: z.number().int(), error: WireError }),
  z.object({ type: z.literal('progress'), id: z.number().int(), step: z.string(), detail: z.string().optional() }),
  /** For a deploy with a manifest: the indexes of the files the bundle must hold (the others the agent has). */
  z.object({ type: z.literal('upload-need'), id: z.number().int(), files: z.array(z.number().int().nonnegative()).max(BUNDLE_MAX_ENTRIES) }),
  z.object({ type: z.literal('log'), id: z.number().int(), entries: z.array(LogEntry) }),
  /** For a `watch`: an event as it is recorded, and the heartbeat now and then. */
  z.object({ type: z.literal('event'), id: z.number().int(), event: AgentEvent }),
  z.object({ type: z.literal('heartbeat'), id: z.number().int(), heartbeat: Heartbeat }),
  /** For an `export`: the next piece of the release's gzip tar, base64 (JSON frames keep one framing for every answer). */
  z.object({ type: z.literal('bundle-chunk'), id: z.number().int(), data: z.string().max(Math.ceil(EXPORT_CHUNK_BYTES / 3) * 4) }),
]));
export type AgentMessage = z.infer<typeof AgentMessage>;

/** The answer to `watch` once it ends (cancelled). */
export const WatchResult = lazySchema(() => z.object({ events: z.number().int() }));
export type WatchResult = z.infer<typeof WatchResult>;

/** The answer to `alerts`: where alerts go now, and how the test POST to it went. */
export const AlertsResult = lazySchema(() => z.object({
  webhook: HttpUrl.nullable(),
  previous: HttpUrl.nullable(),
  test: z.object({ ok: z.boolean(), detail: z.string() }).nullable(),
}));
export type AlertsResult = z.infer<typeof AlertsResult>;

/** The answer to `firewall`: the ports ufw lets in now, and whether this request changed them. */
export const FirewallResult = lazySchema(() => z.object({
  ssh: z.enum(['open', 'closed']),
  changed: z.boolean(),
  /** ufw's allow rules after the change, e.g. `80/tcp`. */
  allowed: z.array(z.string()),
}));
export type FirewallResult = z.infer<typeof FirewallResult>;

/** The answer to `retire-legacy`: the units stopped and disabled, and where the old nginx site went (null: it was gone). */
export const RetireLegacyResult = lazySchema(() => z.object({ stopped: z.array(z.string()), site: z.string().nullable() }));
export type RetireLegacyResult = z.infer<typeof RetireLegacyResult>;

/** The answer to `uninstall`: what goes once the answer is sent (the APIs, nginx and their units stay). */
export const UninstallResult = lazySchema(() => z.object({ removing: z.array(z.string()) }));
export type UninstallResult = z.infer<typeof UninstallResult>;

/** What the agent POSTs (JSON) to the alerts webhook; `text` reads well in a chat channel. */
export const WebhookPayload = lazySchema(() => z.object({
  source: z.literal('plumb-agent'),
  alert: z.enum(['down', 'up', 'repeated-restarts', 'certificate-expiring', 'spare-crashing', 'test']),
  droplet: z.object({ uuid: DropletUuid, hostname: z.string() }),
  text: z.string(),
  event: AgentEvent.nullable(),
}));
export type WebhookPayload = z.infer<typeof WebhookPayload>;

/**
 * The result schema of each request type: the controller parses every answer with it, as the
 * agent parses every request. (A type missing here is answered but not yet checked.)
 */
/** The answer to `export`, after its bundle: the release and the settings it runs with on that droplet. */
export const ExportResult = lazySchema(() => z.object({
  name: ApiName,
  release: ReleaseId,
  digest: ReleaseDigest,
  /** Compressed bytes sent in `bundle-chunk` messages, so a cut stream is noticed. */
  bytes: z.number().int().nonnegative(),
  /** The release's file paths, as in its bundle. */
  files: z.array(z.string().min(1).max(BUNDLE_PATH_MAX_CHARS)).max(BUNDLE_MAX_ENTRIES),
  forwarded: z.boolean(),
  settings: z.object({
    path: UrlPath,
    /** The API's environment: travels only on the authenticated socket, never printed. */
    env: z.record(EnvKey, EnvValue),
    workers: WorkerCount,
    healthPath: UrlPath.nullable(),
    healthTimeoutMs: z.number().int(),
    memoryMax: MemoryLimit.nullable(),
    keepReleases: KeepReleases,
    drainTimeoutMs: DrainTimeoutMs,
  }),
  /** The R packages the release was deployed with; null: --no-deps. */
  packages: PackagesSpec.nullable(),
}));
export type ExportResult = z.infer<typeof ExportResult>;

export const ResultSchemas: Partial<Record<Request['type'], z.ZodType>> = {
  facts: Hello,
  'cloud-init-wait': CloudInitStatus,
  deploy: DeployResult,
  remove: RemoveResult,
  forward: ForwardResult,
  unforward: UnforwardResult,
  restart: RestartResult,
  secrets: SecretsResult,
  'secrets-set': SecretsSetResult,
  status: StatusResult,
  logs: LogsResult,
  releases: ReleasesResult,
  rollback: RollbackResult,
  scale: ScaleResult,
  https: HttpsResult,
  watch: WatchResult,
  alerts: AlertsResult,
  firewall: FirewallResult,
  uninstall: UninstallResult,
  'retire-legacy': RetireLegacyResult,
  upgrade: UpgradeResult,
  keys: KeysResult,
  'keys-add': KeysResult,
  'keys-revoke': KeysResult,
  'packages-plan': PackagesPlan,
  packages: PackagesResult,
  repos: ReposResult,
  export: ExportResult,
};
