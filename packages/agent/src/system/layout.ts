/**
 * Where things live on the droplet. Operators find an API from its name: files under
 * /var/plumber/NAME (as plumber's do_deploy_api put them), units plumber-NAME@PORT.
 */
export const layout = {
  apiDir: (name: string) => `/var/plumber/${name}`,
  releasesDir: (name: string) => `/var/plumber/${name}/releases`,
  releaseDir: (name: string, release: string) => `/var/plumber/${name}/releases/${release}`,
  /** Symlink to the live release, switched by rename. */
  currentLink: (name: string) => `/var/plumber/${name}/current`,
  /**
   * Each release's file list with content hashes (root-only): what a deploy with a file list can
   * take from earlier releases instead of the wire (bundle/delta.ts).
   */
  manifestsDir: (name: string) => `/var/plumber/${name}/manifests`,
  manifestFile: (name: string, release: string) => `/var/plumber/${name}/manifests/${release}.json`,
  /**
   * The API's own R libraries: packages from repositories and source builds (root's, read-only to
   * the API), one generation per set of packages (`library/g-HASH`), each release naming its own.
   * Releases from before generations load the packages directly under `library/`.
   */
  libraryDir: (name: string) => `/var/plumber/${name}/library`,
  libraryGeneration: (name: string, generation: string) => `/var/plumber/${name}/library/${generation}`,
  /** What the API writes that outlives a release. */
  dataDir: (name: string) => `/var/plumber/${name}/data`,
  /** The API user's HOME: R's user cache, data and config (tools::R_user_dir) land here. */
  homeDir: (name: string) => `/var/plumber/${name}/home`,
  apisRoot: '/var/plumber',
  /** Where the API's warm spare waits for its release (ops/spare.ts); the API user's, 0600. */
  spareFifo: (name: string) => `/var/plumber/${name}/spare.fifo`,
  instanceUnit: (name: string, port: number) => `plumber-${name}@${port}.service`,
  unitFile: (name: string) => `/etc/systemd/system/plumber-${name}@.service`,
  /** Per-worker environment (release dir and the user's --env), root-only. */
  instanceEnvFile: (name: string, port: number) => `/var/lib/plumb/instances/${name}@${port}.env`,
  instancesDir: '/var/lib/plumb/instances',
  /** A deploy under way: what it made, so an agent killed in the middle removes just that when it starts again. */
  deployMarker: (name: string) => `/var/lib/plumb/deploying/${name}.json`,
  deployMarkersDir: '/var/lib/plumb/deploying',
  /** The last R package check that passed, per API (ops/packages.ts). */
  packageChecks: '/var/lib/plumb/package-checks.json',
  runner: '/usr/lib/plumb/run-api.R',
  nginxConf: '/etc/nginx/conf.d/plumb.conf',
  /** Where useradd writes the APIs' system users (their uids go into natRules). */
  passwd: '/etc/passwd',
  /** The nftables table sending each API's front port to its live workers, and keeping APIs apart (render/nat.ts). */
  natRules: '/var/lib/plumb/nat.nft',
  /** Loads natRules at boot, before nginx (render/nat.ts). */
  routingUnit: '/etc/systemd/system/plumb-routing.service',
  isolationUnit: '/etc/systemd/system/plumb-isolation.service',
  /** Read by systemd for every plumber-* unit: the workers start after plumb-isolation.service. */
  isolationDropIn: '/etc/systemd/system/plumber-.service.d/plumb-isolation.conf',
  nginxDefaultSite: '/etc/nginx/sites-enabled/default',
  /**
   * plumber's do_provision() site (its APIs' locations are included from
   * sites-available/plumber-apis/): on a host adopted with --import it serves port 80 until
   * `retire-legacy` moves it into disabledSites, and until then plumb's server is not the default.
   */
  legacySite: '/etc/nginx/sites-enabled/plumber',
  /** Where sites plumb took port 80 from go, as `DIR-NAME` (adopt --force does the same). */
  disabledSites: '/etc/nginx/plumb-disabled',
  /** do_deploy_api()'s unit for an API, `plumber-NAME.service` (plumb's own are `plumber-NAME@PORT`). */
  legacyUnit: (name: string) => `plumber-${name}.service`,
  legacyUnitFile: (name: string) => `/etc/systemd/system/plumber-${name}.service`,
  /** Written by nginx's master once it runs. */
  nginxPid: '/run/nginx.pid',
  acmeWebroot: '/var/lib/plumb/acme',
  /** Lab only: a root-owned file here kills the agent at that point (crash-point.ts). */
  crashPoint: (point: string) => `/var/lib/plumb/crash-points/${point}`,
} as const;

export const unitGlob = (name: string) => `plumber-${name}@*.service`;

/** Every API's worker units, `plumber-NAME@PORT.service`: the glob for systemctl, the pattern that reads them. */
export const workerUnits = { glob: 'plumber-*@*.service', pattern: /^plumber-([a-z][a-z0-9_-]*)@(\d+)\.service$/ } as const;
