import { z } from 'zod';

/**
 * Name rules, the same on both ends: nothing from a request reaches a file name, a unit name,
 * a config file or a command line without passing one of these.
 */

/** A droplet name as DigitalOcean takes it: a hostname (letters, digits, '-', '.'), at most 63 here. */
export const DropletName = z
  .string()
  .regex(/^[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?$/, 'a droplet name is letters, digits, "-" and ".", starting and ending with a letter or digit, at most 63 characters');

/** The droplet's plumb identity: a UUID the controller makes; the audience of every token for it. */
export const DropletUuid = z.string().uuid();

/** SHA-256 of a certificate's DER, lower-case hex: what the controller pins. */
export const Fingerprint = z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 fingerprint is 64 lower-case hex digits');

/** The token audience for a droplet. */
export const audienceFor = (dropletUuid: string) => `plumb-agent:${dropletUuid}`;
