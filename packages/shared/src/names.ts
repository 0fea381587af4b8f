import * as z from 'zod';
import { lazySchema } from './lazy.js';
import { ENV_VALUE_MAX_CHARS } from './limits.js';
import { DRAIN_TIMEOUT_SECONDS, HEALTH_TIMEOUT_SECONDS, KEEP_RELEASES, LOG_LINES, WORKER_COUNT, wholeNumberMessage, type WholeNumberRange } from './ranges.js';

/**
 * Name rules, the same on both ends: nothing from a request reaches a file name, a unit name,
 * a config file or a command line without passing one of these.
 */

/** A droplet name as DigitalOcean takes it: a hostname (letters, digits, '-', '.'), at most 63 here. */
export const DropletName = lazySchema(() => z
  .string()
  .regex(/^[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?$/, 'a droplet name is letters, digits, "-" and ".", starting and ending with a letter or digit, at most 63 characters'));

/** The droplet's plumb identity: a UUID the controller makes; the audience of every token for it. */
export const DropletUuid = lazySchema(() => z.string().uuid());

/** SHA-256 of a certificate's DER, lower-case hex: what the controller pins. */
export const Fingerprint = lazySchema(() => z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 fingerprint is 64 lower-case hex digits'));

/** The token audience for a droplet. */
export const audienceFor = (dropletUuid: string) => `plumb-agent:${dropletUuid}`;

/**
 * An API's name: it becomes the unit `plumber-NAME@PORT`, the directory `/var/plumber/NAME`, the
 * default URL path `/NAME` and an nginx upstream name, so it is kept to what all four accept.
 */
export const ApiName = lazySchema(() => z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,38}[a-z0-9]$|^[a-z]$/, 'an API name is 1 to 40 lower-case letters, digits, "-" or "_", starting with a letter and not ending with "-" or "_"'));

/**
 * The longest user name systemd takes without a warning ("does not match strict user/group name
 * rules" from UT_NAMESIZE - 1); useradd itself takes 32.
 */
export const SYSTEM_USER_MAX_CHARS = 31;
const API_USER_PREFIX = 'plumber-';
const API_USER_HASH_CHARS = 8;
/** How much of a long API name its user keeps, before `-` and the hash. */
const API_USER_KEPT_CHARS = SYSTEM_USER_MAX_CHARS - API_USER_PREFIX.length - 1 - API_USER_HASH_CHARS;

/**
 * The system user an API's workers run as: `plumber-NAME`, like its units, so an operator finds
 * one from the other. API names may be longer than a user name can be (31 characters). A name of
 * up to 22 characters gives `plumber-NAME` (at most 30); a longer one gives `plumber-` + its first
 * 14 characters + `-` + 8 hex digits of its FNV-1a hash, always exactly 31, so the two forms never
 * meet and long names that share a beginning still differ.
 */
export function apiUser(name: string): string {
  const plain = `${API_USER_PREFIX}${name}`;
  if (plain.length < SYSTEM_USER_MAX_CHARS) return plain;
  return `${API_USER_PREFIX}${name.slice(0, API_USER_KEPT_CHARS)}-${fnv1a32(name).toString(16).padStart(API_USER_HASH_CHARS, '0')}`;
}

/** 32-bit FNV-1a: small, pure and stable; it only has to tell API names apart. */
function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** A URL path prefix an API is served under: `/a` or `/a/b`, plain segments only. */
export const UrlPath = lazySchema(() => z
  .string()
  .max(100, 'a URL path is at most 100 characters')
  .regex(/^(\/[A-Za-z0-9][A-Za-z0-9._~-]*)+$/, 'a URL path is "/" followed by segments of letters, digits, ".", "_", "~" and "-" (no spaces, no "..", no trailing "/"), e.g. /sum')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'a URL path may not contain "." or ".." segments'));

/** An environment variable the API's R process gets; PLUMB_* names are the agent's own. */
export const EnvKey = lazySchema(() => z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'an environment variable name is letters, digits and "_", not starting with a digit')
  .refine((k) => !k.startsWith('PLUMB_'), 'environment variables starting with PLUMB_ are reserved for plumb'));

export const EnvValue = lazySchema(() => z.string().max(ENV_VALUE_MAX_CHARS, `an environment value is at most ${ENV_VALUE_MAX_CHARS} characters`).refine((v) => !/[\n\r\0]/.test(v), 'an environment value may not contain a newline or NUL'));

/** A release id: when it was made, sortable, unique per API. */
export const ReleaseId = lazySchema(() => z.string().regex(/^\d{8}T\d{6}Z-[0-9a-f]{4}$/, 'a release id looks like 20261125T190000Z-1a2b'));

/** The entry file plumber looks for, in its own order. */
export const ENTRYPOINTS = ['entrypoint.R', 'plumber.R'] as const;

/** A domain for HTTPS: lower-case DNS name with at least one dot, no wildcard, no trailing dot. */
export const DomainName = lazySchema(() => z
  .string()
  .max(253)
  .regex(/^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/, 'a domain is a DNS name like api.example.com (letters, digits, "-" and dots; no spaces, no scheme)'));

/** An email for the ACME account (expiry notices). */
export const Email = lazySchema(() => z.string().max(254).regex(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, 'an email looks like name@example.com'));

/** Memory limit for an API's workers, systemd's MemoryMax= syntax: 512M, 2G. */
export const MemoryLimit = lazySchema(() => z.string().regex(/^[1-9]\d{0,5}[KMG]$/, 'a memory limit is a number and K, M or G, e.g. 512M or 2G'));

/** An http(s) URL (webhooks, ACME directories). */
export const HttpUrl = lazySchema(() => z.string().max(2048).url().refine((u) => /^https?:\/\//.test(u), 'an http:// or https:// URL'));

/** A whole number in a range, with the message a person at the terminal reads. */
export const wholeNumber = (min: number, max: number) => {
  const message = wholeNumberMessage({ min, max });
  return z.number(message).int(message).min(min, message).max(max, message);
};
const inRange = (r: WholeNumberRange) => wholeNumber(r.min, r.max);

/** The ranges in ranges.ts, as rules for the protocol's messages. */
export const WorkerCount = lazySchema(() => inRange(WORKER_COUNT));
export const KeepReleases = lazySchema(() => inRange(KEEP_RELEASES));
export const HealthTimeoutSeconds = lazySchema(() => inRange(HEALTH_TIMEOUT_SECONDS));
export const DrainTimeoutSeconds = lazySchema(() => inRange(DRAIN_TIMEOUT_SECONDS));
export const LogLines = lazySchema(() => inRange(LOG_LINES));
/** journalctl's --since forms, kept to characters that cannot become another option. */
export const JournalSince = lazySchema(() => z.string().regex(/^[A-Za-z0-9 :.+-]{1,40}$/, 'use journalctl\'s forms, e.g. "10 min ago" or "2026-11-25 10:00"'));

/** An R package name as CRAN and Bioconductor allow it: letters, digits and ".", a letter first, not ending in ".". */
export const RPackageName = lazySchema(() => z
  .string()
  .max(100)
  .regex(/^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$/, 'an R package name is letters, digits and ".", starting with a letter and not ending with "."'));

/** An R package version: numbers joined by "." or "-" (R's package_version rule), e.g. 1.2.3 or 0.9-1. */
export const RPackageVersion = lazySchema(() => z.string().max(50).regex(/^\d+(?:[.-]\d+)+$|^\d+$/, 'an R package version is numbers joined by "." or "-", e.g. 1.2.3'));

/** A group of droplets behind one load balancer: the same rule as an API name (it names a DigitalOcean tag and a balancer). */
export const GroupName = lazySchema(() => z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,38}[a-z0-9]$|^[a-z]$/, 'a group name is 1 to 40 lower-case letters, digits, "-" or "_", starting with a letter'));

/** The DigitalOcean tag that makes a droplet a member of group NAME (tags allow letters, digits, ":", "-", "_"). */
export const GROUP_TAG_PREFIX = 'plumb-group:';
export const groupTag = (group: string) => `${GROUP_TAG_PREFIX}${group}`;
/** The group a droplet's tags put it in, if any. */
export const groupOfTags = (tags: readonly string[]) => tags.find((t) => t.startsWith(GROUP_TAG_PREFIX))?.slice(GROUP_TAG_PREFIX.length);

/** The path, on port 80 of every droplet, that answers 200 only while every API there answers: a load balancer's health check. */
export const DROPLET_HEALTH_PATH = '/__plumb/health';
