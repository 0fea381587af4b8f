/**
 * Errors meant for the person at the terminal: `message` says what was wrong, `hint` what to do.
 * `code` is stable, so the agent can send it over the wire and the CLI can name what failed.
 */
export class PlumbError extends Error {
  override name = 'PlumbError';
  constructor(
    readonly code: string,
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
export type DigitalOceanErrorCode =
  | 'DIGITALOCEAN_NO_TOKEN'
  | 'DIGITALOCEAN_UNAUTHORIZED'
  | 'DIGITALOCEAN_FORBIDDEN'
  | 'DIGITALOCEAN_NOT_FOUND'
  | 'DIGITALOCEAN_REJECTED'
  | 'DIGITALOCEAN_RATE_LIMITED'
  | 'DIGITALOCEAN_UNAVAILABLE'
  | 'DIGITALOCEAN_UNREACHABLE'
  | 'DIGITALOCEAN_ERROR'
  | 'DIGITALOCEAN_DROPLET_NOT_READY';

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
