import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import { allDone, ApiName, DomainName, GroupMark, PackagesSpec, DRAIN_TIMEOUT_MS, Email, ENTRYPOINTS, HEALTH_TIMEOUT_MS, HttpUrl, MemoryLimit, ReleaseId, RELEASES_KEPT, SparePolicy, UrlPath } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { log } from './log.js';
import { recoverState, type Recovered, type RecoveryRoots } from './state-recovery.js';
import { layout } from './system/layout.js';

/**
 * The agent's state (`/var/lib/plumb/state.json`): the truth nginx's config and the units are
 * rendered from. Written whole and atomically; read once at start.
 */
/** A generation of an API's R library: named by a hash of the packages in it, so one set is installed once. */
export const LibraryGeneration = z.string().regex(/^g-[0-9a-f]{16}$/);

export const Release = z.object({
  id: ReleaseId,
  createdAt: z.string(),
  files: z.number().int(),
  bytes: z.number().int(),
  /** The --env it was deployed with, so a rollback runs it as it ran (this file is root-only). */
  env: z.record(z.string(), z.string()).default({}),
  /** The R packages it asked for (none with --no-deps): what `plumb packages` lists, with the API library's own. */
  packages: z.array(z.string()).default([]),
  /**
   * Its generation of the API's own R library (ops/packages.ts), so a rollback loads the
   * packages it ran with; null: it has none. Absent: a release from before generations, which
   * loads `library/` itself.
   */
  library: LibraryGeneration.nullable().optional(),
  /** The package request it was deployed with, so `export` hands another droplet the same (null: --no-deps, or from before). */
  packagesSpec: PackagesSpec.nullable().optional(),
});
export type Release = z.infer<typeof Release>;

export const Worker = z.object({ port: z.number().int(), release: ReleaseId });
export type Worker = z.infer<typeof Worker>;

/** A worker taken out of traffic by a switch, finishing what it was serving: stopped once idle, at `until` at the latest. */
export const DrainingWorker = Worker.extend({ until: z.string() });
export type DrainingWorker = z.infer<typeof DrainingWorker>;

export const ApiRecord = z.object({
  name: ApiName,
  path: UrlPath,
  entrypoint: z.enum(ENTRYPOINTS),
  /** Oldest first; the live one is `current`. */
  releases: z.array(Release),
  current: ReleaseId,
  /**
   * nginx proxies the API to 127.0.0.1:frontPort, which never changes; the agent's nftables map
   * sends each new connection there on to one of `workers`. Set on first deploy (or, for state
   * written before it existed, when the agent starts).
   */
  frontPort: z.number().int().optional(),
  /** The workers new connections go to. */
  workers: z.array(Worker),
  /** Workers of the previous set, finishing requests in flight (not sent new ones). */
  draining: z.array(DrainingWorker).default([]),
  drainTimeoutMs: z.number().int().default(DRAIN_TIMEOUT_MS),
  healthPath: UrlPath.nullable(),
  healthTimeoutMs: z.number().int().default(HEALTH_TIMEOUT_MS),
  memoryMax: MemoryLimit.nullable().default(null),
  keepReleases: z.number().int().default(RELEASES_KEPT),
  /**
   * A warm spare is kept after every deploy (--spare). Written beside sparePolicy, which it
   * predates, so that an agent rolled back to a version from before auto reads its state: it then
   * keeps a spare for `always` only.
   */
  spare: z.boolean().default(false),
  /** When a warm spare is kept (ops/spare.ts); absent in records from before auto: `spare` says always or never. */
  sparePolicy: SparePolicy.optional(),
  /**
   * Its secrets (plumb secrets): environment variables every worker gets on top of the live
   * release's --env (a secret wins over an --env of the same name). Kept per API, not per
   * release, so a deploy or rollback keeps them; this file is root-only.
   */
  secrets: z.record(z.string(), z.string()).default({}),
  /** The CRAN-like repositories given to its deploys (--repo, --binary-repo), used again when a deploy names none. */
  repo: HttpUrl.nullable().default(null),
  binaryRepo: HttpUrl.nullable().default(null),
  deployedAt: z.string(),
  /** Its last group deploy or rollback (GroupMark): kept here, not on a laptop, so any controller can undo it. */
  group: GroupMark.nullable().default(null),
});
export type ApiRecord = z.infer<typeof ApiRecord>;

/** The API's live release (undefined only in a state that lost its record). */
export const liveRelease = (api: Pick<ApiRecord, 'releases' | 'current'>): Release | undefined => api.releases.find((r) => r.id === api.current);

/** The live release's --env. */
export const liveEnv = (api: Pick<ApiRecord, 'releases' | 'current'>): Record<string, string> => liveRelease(api)?.env ?? {};

/** The API's spare policy: its sparePolicy, else what `spare` said in a record from before auto. */
export const sparePolicyOf = (api: Pick<ApiRecord, 'spare' | 'sparePolicy'>): SparePolicy => api.sparePolicy ?? (api.spare ? 'always' : 'never');

/** A certificate plumb asked certbot for (lineage NAME under /etc/letsencrypt) and nginx serves over HTTPS. */
export const CertificateRecord = z.object({
  name: DomainName,
  /** The names its HTTPS server answers for; a later certificate naming one of them takes it over. */
  domains: z.array(DomainName).min(1),
  email: Email,
  /** The ACME directory it came from (certbot's renewal config keeps it too). */
  server: HttpUrl,
  issuedAt: z.string(),
});
export type CertificateRecord = z.infer<typeof CertificateRecord>;

export const AgentState = z.object({
  version: z.literal(1),
  /** Set at the first enrolment; until then no socket opens. The first socket burns the secret (server.ts). */
  enrolledAt: z.string().nullable(),
  apis: z.record(ApiName, ApiRecord).default({}),
  /** The API served at `/` too, if any. */
  forward: ApiName.nullable().default(null),
  /** HTTPS, once `plumb https` has run: the certificates nginx serves. */
  https: z.object({ certificates: z.array(CertificateRecord) }).nullable().default(null),
  /** Where the agent POSTs alerts (`plumb alerts --webhook`), if anywhere. */
  alertWebhook: HttpUrl.nullable().default(null),
  /** Default CRAN-like repositories for APIs that name none (`plumb repos`). */
  packageRepos: z.object({ repo: HttpUrl.nullable(), binaryRepo: HttpUrl.nullable() }).default({ repo: null, binaryRepo: null }),
});
export type AgentState = z.infer<typeof AgentState>;

const EMPTY: AgentState = { version: 1, enrolledAt: null, apis: {}, forward: null, https: null, alertWebhook: null, packageRepos: { repo: null, binaryRepo: null } };

export class StateStore {
  private constructor(
    private readonly file: string,
    private current: AgentState,
    /** Set when state.json was damaged at start and rebuilt (the agent records an event). */
    readonly recovered?: Recovered,
  ) {}

  /**
   * Reads state.json. A damaged one never stops the agent (systemd would restart it for ever):
   * it is set aside and the state rebuilt (state-recovery.ts), then saved.
   */
  static async open(stateDir: string, recovery: { enrolled: boolean; roots?: RecoveryRoots } = { enrolled: false }): Promise<StateStore> {
    const file = path.join(stateDir, 'state.json');
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (text === undefined) return new StateStore(file, EMPTY);
    let problem: string;
    try {
      const parsed = AgentState.safeParse(JSON.parse(text));
      if (parsed.success) return new StateStore(file, parsed.data);
      const issue = parsed.error.issues[0];
      problem = issue ? `${issue.path.join('.')}: ${issue.message}` : 'not a state';
    } catch (err) {
      problem = (err as Error).message;
    }
    const roots = recovery.roots ?? { apiRoot: layout.apisRoot, instancesDir: layout.instancesDir };
    const recovered = await recoverState(file, problem, recovery.enrolled, roots);
    log.error('state.json was damaged; rebuilt it', { kept: recovered.keptAs, detail: recovered.detail });
    const store = new StateStore(file, recovered.state, recovered);
    await store.update((s) => s);
    return store;
  }

  get(): AgentState {
    return this.current;
  }

  async update(change: (state: AgentState) => AgentState): Promise<AgentState> {
    const next = AgentState.parse(change(this.current));
    const text = `${JSON.stringify(next, null, 2)}\n`;
    // A second copy: if state.json is ever damaged (a bad disk, a hand edit), the rebuild starts from
    // it. Each write is atomic on its own, so both at once: their fsyncs are on a deploy's answer path.
    await allDone([writeFileAtomic(this.file, text), writeFileAtomic(`${this.file}.backup`, text)]);
    this.current = next;
    return next;
  }
}
