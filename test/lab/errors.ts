/** A lab failure, with a message for the person running the tests or the demo. */
export class LabError extends Error {
  override readonly name = 'LabError';
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}
