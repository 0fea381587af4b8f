/**
 * Exit codes of `plumb`, as gh has them: scripts tell "try again later" (the droplet did not
 * answer) from "fix the command" (usage) from "log in" (authentication), with or without --json.
 */
export const EXIT = {
  ok: 0,
  /** Something failed; the message says what. */
  failure: 1,
  /** The command line was wrong (a flag, an argument, a name), or a confirmation was not given: nothing was attempted. */
  usage: 2,
  /** A droplet's agent could not be reached, or the connection to it was lost. */
  unreachable: 3,
  /** A credential is missing or refused (the DigitalOcean token, this controller's key). */
  auth: 4,
} as const;
export type ExitKind = keyof typeof EXIT;
export type ExitCode = (typeof EXIT)[ExitKind];

/**
 * Every error code plumb and its agent use, with its exit code and meaning: the one list
 * (docs/commands.md shows it; a unit test keeps the two in step). The agent sends these codes
 * over the wire, so the CLI says exactly what failed on the droplet.
 */
export const ERROR_CODES = {
  // What the user typed
  INVALID_INPUT: ['usage', 'a flag, an argument or a name is not valid (including a flag plumb does not know); nothing was changed'],
  DROPLET_AMBIGUOUS: ['usage', 'no droplet was named and plumb knows none, or several and stdin is not a terminal to ask at (give --droplet)'],
  DROPLET_UNKNOWN: ['usage', 'plumb knows no droplet by that name or id'],
  CONFIRMATION_NEEDED: ['usage', 'a destructive command ran without --yes where no one can answer its question'],
  NOT_CONFIRMED: ['usage', 'the answer to the confirmation question was not "yes" (or the name): nothing was done'],
  TERMS_NOT_AGREED: ['usage', "plumb https needs --agree-tos: the ACME server's terms"],
  // Credentials
  DIGITALOCEAN_NO_TOKEN: ['auth', 'DIGITALOCEAN_ACCESS_TOKEN is not set'],
  DIGITALOCEAN_UNAUTHORIZED: ['auth', 'DigitalOcean refused the token (401)'],
  DIGITALOCEAN_FORBIDDEN: ['auth', 'the token may not do this (403: a read-only token, or a missing scope)'],
  UNAUTHORIZED: ['auth', "the agent refused this controller's token: its key is not (or no longer) trusted there"],
  CONTROLLER_KEY_MISSING: ['auth', "this machine's controller key is missing; droplets trust only the keys they were given"],
  // plumb adopt (SSH, once)
  ADOPT_TARGET: ['usage', 'adopt takes root@HOST (plumb installs as root) with a host name or address'],
  ADOPT_UNSUPPORTED_OS: ['failure', 'the host does not run Debian 13, the only system plumb installs on; nothing was changed'],
  ADOPT_ALREADY: ['failure', 'the host already has a plumb agent; nothing was changed'],
  ADOPT_CLASH: ['failure', 'the host serves things plumb would overwrite (nginx on port 80, ufw rules, /var/plumber); nothing was changed (--force takes over)'],
  ADOPT_FAILED: ['failure', 'installing plumb over SSH failed part way (its output is shown)'],
  ADOPT_IMPORT_LIMIT: ['failure', 'adopt --import found more old APIs than plumb takes over in one adopt (LEGACY_APIS_MAX); nothing was changed'],
  ADOPT_NOT_TAGGED: ['failure', 'an adopted DigitalOcean droplet could still not be tagged (no token, another account, another address); it stays external'],
  SSH_HOST_KEY_CHANGED: ['auth', "the host's SSH key is not the one in known_hosts: plumb did not log in"],
  SSH_HOST_KEY_UNKNOWN: ['auth', 'the host is not in known_hosts and no one could be asked (add --yes to accept it on first contact)'],
  SSH_AUTH_FAILED: ['auth', 'the host refused the SSH key(s)'],
  SSH_UNREACHABLE: ['unreachable', 'SSH could not connect to the host'],
  EXTERNAL_HOST: ['usage', 'the droplet was adopted from outside DigitalOcean: DigitalOcean cannot act on it (plumb forget / plumb uninstall)'],
  // Reaching a droplet
  AGENT_UNREACHABLE: ['unreachable', "the droplet's agent did not answer (address, port, firewall, or the droplet is down)"],
  DISCONNECTED: ['unreachable', 'the connection between plumb and the agent closed in the middle of a request'],
  DROPLET_SILENT: ['unreachable', 'a new droplet never answered after it became active'],
  // DigitalOcean
  DIGITALOCEAN_NOT_FOUND: ['failure', 'DigitalOcean has no such resource (404)'],
  DIGITALOCEAN_REJECTED: ['failure', 'DigitalOcean refused the request as invalid (422 and other 4xx)'],
  DIGITALOCEAN_RATE_LIMITED: ['failure', 'DigitalOcean kept answering 429 after the retries'],
  DIGITALOCEAN_UNAVAILABLE: ['failure', 'DigitalOcean kept answering 5xx after the retries'],
  DIGITALOCEAN_UNREACHABLE: ['failure', 'the DigitalOcean API could not be reached'],
  DIGITALOCEAN_ERROR: ['failure', 'DigitalOcean answered something plumb did not expect'],
  DIGITALOCEAN_DROPLET_NOT_READY: ['failure', 'a new droplet did not become active with an address in time'],
  // This machine's plumb state
  STATE_DAMAGED: ['failure', 'a file in plumb\'s config directory (droplets.json) does not parse'],
  STATE_LOCKED: ['failure', 'another plumb process holds the lock on a config file for too long'],
  CONTROLLER_KEY_DAMAGED: ['failure', "this machine's controller key file does not parse"],
  DROPLET_CONFLICT: ['failure', 'an imported droplet clashes with a known one (same name or id, another pin)'],
  NOT_ENROLLED: ['failure', 'the droplet was never enrolled (its provision did not finish)'],
  // Talking to the agent
  PIN_MISMATCH: ['failure', "the agent's certificate is not the one pinned at enrolment: nothing was sent to it"],
  AGENT_TLS: ['failure', 'the agent presented no usable TLS certificate'],
  AGENT_PROTOCOL: ['failure', 'the agent sent something that is not plumb protocol'],
  AGENT_REFUSED: ['failure', 'the agent refused the connection (an HTTP status other than 401)'],
  AGENT_OUTDATED: ['failure', 'the agent is older than this plumb speaks (plumb upgrade)'],
  AGENT_NEWER: ['failure', 'the agent is newer than this plumb (upgrade plumb here)'],
  ENROLMENT_FAILED: ['failure', 'the agent refused enrolment or answered it badly'],
  ENROLMENT_PROOF: ['failure', 'the droplet could not prove it is the one plumb created: do not use it'],
  ALREADY_ENROLLED: ['failure', 'the agent was enrolled already and has burnt its enrolment secret'],
  BAD_REQUEST: ['failure', 'the agent could not parse a request (versions apart?)'],
  BUSY: ['failure', 'the agent is doing the same thing already (one upload per connection, one upgrade at a time)'],
  NOT_FOUND: ['failure', 'the agent has no such HTTP endpoint'],
  INTERNAL: ['failure', "the agent failed unexpectedly (journalctl -u plumb-agent says why), or sent a code this plumb does not know; or plumb itself did (a bug: the stack trace is on stderr)"],
  // Provisioning and upgrades
  CLOUD_INIT_TEMPLATE_MISSING: ['failure', "plumb's own cloud-init template is not installed (a broken install)"],
  CLOUD_INIT_TEMPLATE_INVALID: ['failure', 'the rendered user-data fails cloud-init\'s schema or is over 64 KiB'],
  CLOUD_INIT_FAILED: ['failure', 'cloud-init ended with errors on the droplet'],
  CLOUD_INIT_TIMEOUT: ['failure', 'cloud-init did not finish in time'],
  BOOTSTRAP_FAILED: ['failure', 'the droplet could not install the agent package'],
  BOOTSTRAP_REFUSED: ['failure', "the droplet's bootstrap refused the agent package upload"],
  AGENT_NEVER_STARTED: ['failure', 'the agent was installed but never started'],
  AGENT_NEVER_ANSWERED: ['failure', 'the agent did not answer in time during provisioning'],
  AGENT_CONFIG: ['failure', "the agent's config file on the droplet is missing or damaged"],
  AGENT_PACKAGE_MISSING: ['failure', 'this plumb has no built agent package (npm run build makes it)'],
  AGENT_PACKAGE_INVALID: ['failure', 'the agent package is not the one announced (name, version or manifest)'],
  AGENT_PACKAGE_MISMATCH: ['failure', "the built agent package is not this plumb's version"],
  AGENT_PACKAGE_REFUSED: ['failure', 'the droplet refused the agent package (size or sha512)'],
  AGENT_PACKAGE_TOO_LARGE: ['failure', 'the agent package is over the size the droplet accepts'],
  AGENT_PACKAGE_INTEGRITY: ['failure', 'the agent package arrived with another sha512 than announced'],
  AGENT_PACKAGE_BROKEN: ['failure', 'the new agent does not start; nothing was switched'],
  UPGRADE_UNCONFIRMED: ['failure', 'the new agent did not confirm in time; the droplet puts the old one back'],
  UPGRADE_ROLLED_BACK: ['failure', 'the new agent failed and the droplet put the old one back'],
  DOWNGRADE_REFUSED: ['failure', 'the droplet runs a newer agent (plumb upgrade --force replaces it)'],
  // Deploys and APIs
  API_UNKNOWN: ['failure', 'the droplet has no API of that name'],
  NO_SUCH_RELEASE: ['failure', 'the API has no release of that id (or no live one)'],
  SECRET_UNKNOWN: ['failure', 'the API has no secret of that name (plumb secrets list NAME shows them)'],
  TOO_MANY_SECRETS: ['failure', 'the API would hold more secrets than it may'],
  ALREADY_LIVE: ['failure', 'that release is the live one already'],
  RELEASE_EXISTS: ['failure', 'a release directory of that id exists already'],
  PATH_TAKEN: ['failure', 'another API is served at that URL path'],
  NO_ENTRYPOINT: ['failure', 'the bundle has no plumber.R or entrypoint.R at its top'],
  BUNDLE_REFUSED: ['failure', 'the bundle holds something a release may not (outside paths, links, devices, too many entries, not gzip/tar)'],
  BUNDLE_TOO_LARGE: ['failure', 'the bundle is over the size cap'],
  BUNDLE_TRUNCATED: ['failure', 'the upload ended before the bundle did'],
  BUNDLE_STALLED: ['failure', 'the upload stopped sending for too long'],
  DISK_FULL: ['failure', "the droplet's disk filled up while the release was written; the live release is untouched"],
  RELEASE_CHANGED: ['failure', 'a file a deploy would reuse from an earlier release is not what the agent recorded there (send the whole bundle: --full)'],
  HEALTH_CHECK_FAILED: ['failure', 'the new release did not answer its health check; the previous one serves'],
  R_PACKAGE_NOT_FOUND: ['failure', 'an R package the API needs is in no repository the droplet uses'],
  R_PACKAGE_VERSION: ['failure', 'an R package version differs from what the API asks (with --strict-versions)'],
  R_PACKAGE_INSTALL_FAILED: ['failure', 'apt or R could not install an R package'],
  API_DIR: ['failure', "the agent could not make or own the API's directories"],
  API_USER: ['failure', "the agent could not make the API's system user"],
  NO_FRONT_PORT: ['failure', 'no front port is free for a new API'],
  RENDER_REFUSED: ['failure', 'the agent refused to render a config from a value that is not safe in it'],
  NGINX_CONFIG: ['failure', 'nginx -t refused the rendered config, or the reload failed; the previous config serves'],
  NFTABLES: ['failure', 'nft could not load the routing table to the workers'],
  SYSTEMD: ['failure', 'systemctl failed for a worker unit'],
  FIREWALL: ['failure', 'ufw could not change a rule'],
  // HTTPS
  ACME_DIRECTORY: ['failure', "the ACME server's directory could not be read"],
  DNS_MISMATCH: ['failure', 'a domain does not point at the droplet (--skip-dns-check asks anyway)'],
  CERTBOT_FAILED: ['failure', 'certbot could not get a certificate (its reason follows)'],
  CERTIFICATE_MISMATCH: ['failure', 'the certificate does not name every domain asked for'],
  CERTIFICATE_UNREADABLE: ['failure', 'the certificate just installed could not be read'],
  // Keys
  KEY_UNKNOWN: ['failure', 'the droplet trusts no key of that name or id'],
  KEY_NAME_TAKEN: ['failure', 'a trusted key has that name already'],
  KEY_CONFLICT: ['failure', 'that key is trusted already under another name'],
  KEY_IN_USE: ['failure', 'the key is the one this connection uses (revoke it from another machine)'],
  LAST_KEY: ['failure', 'the droplet would trust no key at all'],
  TOO_MANY_KEYS: ['failure', 'the droplet trusts as many keys as it may'],
  KEY_REVOKED: ['failure', 'the key was revoked already (by another plumb at the same time)'],
  // Groups and load balancers
  GROUP_PROVISION_FAILED: ['failure', 'some droplets of a `provision --group --count N` failed (the others are ready)'],
  GROUP_EMPTY: ['failure', "no droplet carries the group's tag"],
  GROUP_MEMBER_UNKNOWN: ['failure', 'a droplet of the group is not known to this plumb (plumb droplets import it)'],
  GROUP_NO_DEPLOY: ['failure', 'this plumb has no record of a group deploy of that API to undo'],
  GROUP_MEMBER_UNREACHABLE: ['unreachable', 'a droplet of the group could not be asked: a group deploy deployed nothing (--skip-unreachable deploys to the others); a group rollback found nothing to undo on the droplets that answered'],
  GROUP_SYNC_FAILED: ['failure', "droplets joined a group but could not be given the group's APIs (plumb group sync)"],
  LB_EXISTS: ['failure', 'the group has a load balancer already'],
  LB_ERRORED: ['failure', 'DigitalOcean reports the load balancer as errored'],
  LB_NOT_READY: ['failure', 'the load balancer did not become active in time'],
  LB_UNKNOWN: ['failure', 'the group has no load balancer'],
  DOMAIN_NOT_ON_DIGITALOCEAN: ['failure', "a domain's zone is not on DigitalOcean DNS (a certificate on the balancer needs it)"],
  DNS_RECORD_ELSEWHERE: ['failure', 'a domain has an A record to another address than the balancer'],
  LB_CERTIFICATE_FAILED: ['failure', 'DigitalOcean did not issue the certificate (error state, or not in time)'],
  // Watching
  WATCH_ENDED: ['failure', 'the agent ended a watch'],
  WATCH_TOO_SLOW: ['failure', 'the watcher read events more slowly than the droplet made them'],
} as const satisfies Record<string, readonly [ExitKind, string]>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** The exit code for an error code; one the agent sent that this plumb does not know is a failure. */
export function exitCodeOf(code: string): ExitCode {
  return isErrorCode(code) ? EXIT[ERROR_CODES[code][0]] : EXIT.failure;
}

/**
 * Errors meant for the person at the terminal: `message` says what was wrong, `hint` what to do.
 * `code` is stable, so the agent can send it over the wire and the CLI can name what failed.
 */
export class PlumbError extends Error {
  override name = 'PlumbError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Bad input from the user (a name, a path, a flag): nothing was changed anywhere. */
export class ValidationError extends PlumbError {
  override name = 'ValidationError';
  constructor(message: string, hint?: string) {
    super('INVALID_INPUT', message, hint);
  }
}

/** The stable codes a `DigitalOceanError` carries. */
export type DigitalOceanErrorCode = Extract<ErrorCode, `DIGITALOCEAN_${string}`>;

export interface DigitalOceanErrorDetails {
  hint?: string;
  /** The HTTP status of DigitalOcean's last answer, when there was one. */
  status?: number;
  /** DigitalOcean's error `id` (e.g. `unprocessable_entity`). */
  id?: string;
  /** DigitalOcean's `request_id`: what its support asks for. */
  requestId?: string;
}

/** The DigitalOcean API refused or failed a request, or a droplet did not become usable. */
export class DigitalOceanError extends PlumbError {
  override name = 'DigitalOceanError';
  override readonly code: DigitalOceanErrorCode;
  readonly status: number | undefined;
  readonly id: string | undefined;
  readonly requestId: string | undefined;
  constructor(code: DigitalOceanErrorCode, message: string, details: DigitalOceanErrorDetails = {}) {
    super(code, message, details.hint);
    this.code = code;
    this.status = details.status;
    this.id = details.id;
    this.requestId = details.requestId;
  }
}
