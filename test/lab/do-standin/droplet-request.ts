import { defaultRegion, findImage, findRegion, findSize, type Image, type Region, type Size } from './catalog.js';
import { unprocessable } from './errors.js';
import { findSshKey } from './ssh-keys.js';
import type { SshKeyRecord, Store } from './store.js';

/** DigitalOcean's limits on a create request. */
export const MAX_DROPLETS_PER_REQUEST = 10;
export const MAX_USER_DATA_BYTES = 64 * 1024;
const MAX_NAME_LENGTH = 255;
const MAX_TAG_LENGTH = 255;
/** The spec's own patterns for droplet names (hostname characters) and tags. */
const NAME_PATTERN = /^[a-zA-Z0-9]?[a-z0-9A-Z.-]*[a-z0-9A-Z]$/;
const TAG_PATTERN = /^[a-zA-Z0-9_:-]+$/;

export interface CreateDropletRequest {
  names: string[];
  /** `names` was sent: the answer is `{droplets}` rather than `{droplet}`. */
  multiple: boolean;
  size: Size;
  region: Region;
  image: Image;
  tags: string[];
  userData: string;
  sshKeys: SshKeyRecord[];
  features: string[];
  vpcUuid: string | undefined;
}

type Fields = Record<string, unknown>;

function names(body: Fields): { names: string[]; multiple: boolean } {
  const multiple = body.names !== undefined;
  if (multiple && body.name !== undefined) throw unprocessable('Specify either name or names, not both.');
  const list: unknown[] = multiple ? (Array.isArray(body.names) ? body.names : [null]) : [body.name];
  if (list.length === 0) throw unprocessable('Names must contain at least one name.');
  if (list.length > MAX_DROPLETS_PER_REQUEST) {
    throw unprocessable(`You may only create up to ${MAX_DROPLETS_PER_REQUEST} Droplets at a time.`);
  }
  for (const name of list) {
    if (typeof name !== 'string' || name === '') throw unprocessable('Name is required.');
    if (name.length > MAX_NAME_LENGTH || !NAME_PATTERN.test(name)) {
      throw unprocessable('Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)');
    }
  }
  return { names: list as string[], multiple };
}

function catalogEntries(body: Fields): { size: Size; region: Region; image: Image } {
  const size = typeof body.size === 'string' ? findSize(body.size) : undefined;
  if (size === undefined) throw unprocessable('You specified an invalid size for Droplet creation.');
  const regionSlug = body.region ?? defaultRegion;
  const region = typeof regionSlug === 'string' ? findRegion(regionSlug) : undefined;
  if (region === undefined || !region.available) {
    throw unprocessable('You specified an invalid region for Droplet creation.');
  }
  if (!region.sizes.includes(size.slug)) throw unprocessable('Size is not available in this region.');
  const image = typeof body.image === 'string' || typeof body.image === 'number' ? findImage(body.image) : undefined;
  if (image === undefined) throw unprocessable('You specified an invalid image for Droplet creation.');
  if (!image.regions.includes(region.slug)) throw unprocessable('Image is not available in this region.');
  return { size, region, image };
}

function tags(body: Fields): string[] {
  if (body.tags === undefined || body.tags === null) return [];
  if (!Array.isArray(body.tags)) throw unprocessable('tags must be an array of strings.');
  for (const tag of body.tags) {
    if (typeof tag !== 'string' || tag.length > MAX_TAG_LENGTH || !TAG_PATTERN.test(tag)) {
      throw unprocessable(
        `Tag names may only contain letters, numbers, colons, dashes, and underscores, ` +
          `up to ${MAX_TAG_LENGTH} characters: ${JSON.stringify(tag)}`,
      );
    }
  }
  return [...new Set(body.tags as string[])];
}

function userData(body: Fields): string {
  if (body.user_data === undefined || body.user_data === null) return '';
  if (typeof body.user_data !== 'string') throw unprocessable('user_data must be a string.');
  if (Buffer.byteLength(body.user_data, 'utf8') > MAX_USER_DATA_BYTES) {
    throw unprocessable('user_data is too large: it may not exceed 64 KiB.');
  }
  return body.user_data;
}

function sshKeys(body: Fields, store: Store): SshKeyRecord[] {
  if (body.ssh_keys === undefined || body.ssh_keys === null) return [];
  if (!Array.isArray(body.ssh_keys)) throw unprocessable('ssh_keys must be an array of key ids or fingerprints.');
  return body.ssh_keys.map((ref: unknown) => {
    const key = typeof ref === 'string' || typeof ref === 'number' ? findSshKey(store, ref) : undefined;
    if (key === undefined) throw unprocessable(`SSH key ${JSON.stringify(ref)} could not be found.`);
    return key;
  });
}

/** The optional flags DigitalOcean reports back as the droplet's `features`. */
function features(body: Fields): string[] {
  const flags: [string, string][] = [
    ['backups', 'backups'],
    ['ipv6', 'ipv6'],
    ['monitoring', 'monitoring'],
    ['with_droplet_agent', 'droplet_agent'],
  ];
  for (const key of [...flags.map(([k]) => k), 'private_networking']) {
    if (body[key] !== undefined && typeof body[key] !== 'boolean') throw unprocessable(`${key} must be a boolean.`);
  }
  return ['private_networking', ...flags.filter(([key]) => body[key] === true).map(([, feature]) => feature)];
}

/** Validates a create request the way DigitalOcean does, answering 422 with its messages. */
export function parseCreateDroplet(body: unknown, store: Store): CreateDropletRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw unprocessable('The request body must be a JSON object.');
  }
  const fields = body as Fields;
  if (Array.isArray(fields.volumes) && fields.volumes.length > 0) {
    throw unprocessable('The lab has no block storage volumes; create the droplet without volumes.');
  }
  if (fields.vpc_uuid !== undefined && typeof fields.vpc_uuid !== 'string') throw unprocessable('vpc_uuid must be a string.');
  return {
    ...names(fields),
    ...catalogEntries(fields),
    tags: tags(fields),
    userData: userData(fields),
    sshKeys: sshKeys(fields, store),
    features: features(fields),
    vpcUuid: fields.vpc_uuid as string | undefined,
  };
}
