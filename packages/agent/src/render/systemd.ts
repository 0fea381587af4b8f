import { API_MEMORY_MAX_DEFAULT, API_OOM_SCORE_ADJUST, ApiName, apiUser, EnvKey, EnvValue, MemoryLimit, METADATA_ADDRESS, ReleaseId } from '@plumb/shared';
import { layout } from '../system/layout.js';
import { checked, renderRefused } from './model.js';

/**
 * systemd files for an API's R workers: the template unit `plumber-NAME@.service` (instance =
 * port) and the environment files its instances read.
 */

/** /etc/systemd/system/plumber-NAME@.service. Holds no secret: unit files are world-readable. */
export function renderApiUnit(name: string, opts: { memoryMax?: string | null } = {}): string {
  checked(ApiName, name, 'the API name');
  const user = apiUser(name);
  const memory = opts.memoryMax
    ? `# --memory: systemd stops a worker that grows past this (and restarts it).\nMemoryMax=${checked(MemoryLimit, opts.memoryMax, 'the memory limit')}`
    : `# No --memory given: a share of the droplet's RAM, so one runaway worker cannot starve the rest.\nMemoryMax=${API_MEMORY_MAX_DEFAULT}`;
  return `# Written by plumb-agent; edits here are overwritten. One instance per worker port:
#   systemctl restart 'plumber-${name}@*'    journalctl -t plumber-${name} -f   (or plumb logs ${name} -f)
# (A -u glob does not follow: journalctl matches it once, to the ports already in the journal, not a redeploy's.)
[Unit]
Description=plumber API ${name} (port %i)
After=network.target
# Ordered before nginx, so at shutdown (or a reboot) systemd stops nginx first and a worker only
# once nginx no longer passes it requests: no 502s while the droplet goes down. At boot this
# waits for nothing (a worker counts as started once R runs; plumb-routing.service waits for it).
Before=nginx.service
StartLimitIntervalSec=60
StartLimitBurst=10

[Service]
Type=simple
# This API's own system user: no other API can read its files, environment or processes.
User=${user}
Group=${user}
# This worker's own root-only file: its release and the --env values it was deployed with, so
# secrets stay out of this world-readable unit and an old worker keeps its release's settings.
EnvironmentFile=/var/lib/plumb/instances/${name}@%i.env
Environment=PLUMB_PORT=%i PLUMB_API=${name}
# R's user cache, data and config (tools::R_user_dir) and packages' caches: the API's own, kept across releases.
Environment=HOME=/var/plumber/${name}/home
# The API's own R library (root's, read-only here) goes before R's: packages plumb built for it.
# Each worker's env file names its release's generation of it, which overrides this (the place
# of releases from before generations, whose env files do not name one).
Environment=R_LIBS=/var/plumber/${name}/library
# The runner changes into the release directory itself.
WorkingDirectory=/var/plumber/${name}
ExecStart=/usr/bin/Rscript --no-save --no-restore /usr/lib/plumb/run-api.R
# Whatever ends R (a crash, quit() in the API's code, a kill), it is started again: a worker serves
# until the agent stops it (a stop is never restarted). The start limit above ends a loop.
Restart=always
RestartSec=1
TimeoutStopSec=15
KillSignal=SIGTERM
SyslogIdentifier=plumber-${name}
${memory}
OOMScoreAdjust=${API_OOM_SCORE_ADJUST}

# What the API creates is its own alone.
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateIPC=yes
ProtectProc=invisible
ProcSubset=pid
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
# Where the API may write: beside its code in its releases (what the bundle shipped stays root's
# and read-only: see security.md), data/ and home/. "-": a missing directory must not stop the worker.
ReadWritePaths=-/var/plumber/${name}/releases -/var/plumber/${name}/data -/var/plumber/${name}/home
# The agent's state and keys, and cloud-init's copy of the user-data, are root's 0600 anyway.
InaccessiblePaths=-/var/lib/plumb -/etc/plumb-agent -/var/lib/cloud
# No metadata service (it serves user-data) for the APIs. Needs cgroup v2 BPF, ignored with a warning
# without it: the agent's nftables table refuses it to the API's user as well.
IPAddressDeny=${METADATA_ADDRESS}

[Install]
WantedBy=multi-user.target
`;
}

/**
 * A worker's own environment file, /var/lib/plumb/instances/NAME@PORT.env: which release it
 * runs, its release's R library (`undefined`: a release from before library generations, which
 * the unit's default serves; `null`: none), and the user's --env values as they were when that
 * release was deployed (after R_LIBS: a user's own R_LIBS wins), then the API's secrets after
 * SECRETS_MARK (a secret wins over an --env of the same name). The mark keeps them secrets when
 * the agent rebuilds its state from these files alone (state-recovery.ts).
 */
export function renderInstanceEnv(releaseDir: string, env: Record<string, string> = {}, library?: string | null, secrets: Record<string, string> = {}): string {
  const [, name = '', release = ''] = /^\/var\/plumber\/([^/]+)\/releases\/([^/]+)$/.exec(releaseDir) ?? [];
  if (!ApiName.safeParse(name).success || !ReleaseId.safeParse(release).success) {
    throw renderRefused(`the release directory ${JSON.stringify(releaseDir)}: not /var/plumber/NAME/releases/ID`);
  }
  return `PLUMB_RELEASE_DIR=${releaseDir}\n${rLibsLine(name, library)}${envAndSecrets(env, secrets)}`;
}

/** The --env values no secret overrides, then the secrets after SECRETS_MARK. */
function envAndSecrets(env: Record<string, string>, secrets: Record<string, string>): string {
  const plain = Object.fromEntries(Object.entries(env).filter(([key]) => !(key in secrets)));
  const secretLines = Object.keys(secrets).length > 0 ? `${SECRETS_MARK}\n${renderUserEnv(secrets)}` : '';
  return `${renderUserEnv(plain)}${secretLines}`;
}

/**
 * A warm spare's env file (ops/spare.ts), at the path of the worker it will become: the fifo it
 * waits on (layout.spareFifo), the packages it loads, the live release's R library, --env and the
 * API's secrets (as renderInstanceEnv writes them), so R and the packages it loads start in a cold
 * start's environment. No release: it comes at the handover, which rewrites this file as
 * renderInstanceEnv, so a restart of the worker is a cold start of its release. Without
 * PLUMB_RELEASE_DIR state-recovery.ts takes no spare for a worker.
 */
export function renderSpareEnv(name: string, library: string | null | undefined, packages: readonly string[], env: Record<string, string> = {}, secrets: Record<string, string> = {}): string {
  checked(ApiName, name, 'the API name');
  const bad = packages.find((p) => !/^[A-Za-z][A-Za-z0-9.]*$/.test(p));
  if (bad !== undefined) throw renderRefused(`the R package name ${JSON.stringify(bad)}`);
  return `PLUMB_SPARE=${layout.spareFifo(name)}\nPLUMB_SPARE_PACKAGES="${packages.join(' ')}"\n${rLibsLine(name, library)}${envAndSecrets(env, secrets)}`;
}

/** The R_LIBS line of a worker's env file: its release's generation, none, or (undefined) the unit's default. */
function rLibsLine(name: string, library: string | null | undefined): string {
  if (library && library !== `/var/plumber/${name}/library/${/^\/var\/plumber\/[^/]+\/library\/(g-[0-9a-f]{16})$/.exec(library)?.[1] ?? ''}`) {
    throw renderRefused(`the R library ${JSON.stringify(library)}: not /var/plumber/${name}/library/g-HASH`);
  }
  return library === undefined ? '' : `R_LIBS=${library ?? ''}\n`;
}

/** A comment line (systemd skips it) after which a worker's env file holds the API's secrets. */
export const SECRETS_MARK = '# plumb secrets (not --env):';

/**
 * The user's --env in systemd's EnvironmentFile= syntax, one `KEY="VALUE"` line each, sorted.
 * Inside double quotes systemd's parser (env-file.c) unescapes exactly \\ \" \` \$ and keeps
 * every other character as it is; it expands no variables in EnvironmentFile=. This is the
 * quoting systemd's own write_env_file() uses.
 */
export function renderUserEnv(env: Record<string, string>): string {
  return Object.keys(env)
    .sort()
    .map((key) => {
      checked(EnvKey, key, 'the environment variable name');
      const value = env[key] ?? '';
      // systemd drops (with an error) a line whose value is not valid UTF-8 or holds a noncharacter.
      const problem = EnvValue.safeParse(value).error?.issues[0]?.message ?? (/[\p{Cs}\p{Noncharacter_Code_Point}]/u.test(value) ? 'it is not text systemd accepts' : undefined);
      // Values may be secrets: the message names the variable only.
      if (problem) throw renderRefused(`the value of ${key}: ${problem}`);
      return `${key}="${value.replace(/[\\"`$]/g, '\\$&')}"\n`;
    })
    .join('');
}
