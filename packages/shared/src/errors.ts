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
