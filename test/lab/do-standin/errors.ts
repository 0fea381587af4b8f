import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';

/**
 * DigitalOcean's error body. The `id`s and messages below are the ones the real API sends, which
 * differ in places from the examples in its OpenAPI spec (e.g. `Unauthorized` vs `unauthorized`);
 * clients match on them, so the lab copies the real ones.
 */
export interface ErrorBody {
  id: string;
  message: string;
  request_id: string;
}

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly id: string,
    message: string,
    /** Extra response headers (Retry-After on 429). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export const unauthorized = () => new ApiError(401, 'Unauthorized', 'Unable to authenticate you');
export const notFound = () =>
  new ApiError(404, 'not_found', 'The resource you were accessing could not be found.');
export const unprocessable = (message: string) => new ApiError(422, 'unprocessable_entity', message);
export const forbidden = (message: string) => new ApiError(403, 'forbidden', message);
export const badRequest = (message: string) => new ApiError(400, 'bad_request', message);
export const tooManyRequests = (retryAfterSeconds: number) =>
  new ApiError(429, 'too_many_requests', 'API Rate limit exceeded.', {
    'retry-after': String(retryAfterSeconds),
  });
export const serverError = () =>
  new ApiError(500, 'server_error', 'Server was unable to give you a response.');
export const serviceUnavailable = () =>
  new ApiError(503, 'service_unavailable', 'The service is temporarily unavailable. Please try again later.');

export function sendError(res: Response, err: ApiError): void {
  const body: ErrorBody = { id: err.id, message: err.message, request_id: requestId(res) };
  res.set(err.headers).status(err.status).json(body);
}

/**
 * Every /v2 response carries the request id DigitalOcean puts in error bodies, so a test failure
 * can be matched to the lab's own record of the request.
 */
export const assignRequestId: RequestHandler = (_req, res, next) => {
  res.set('x-request-id', randomUUID());
  next();
};

function requestId(res: Response): string {
  const id = res.get('x-request-id');
  return typeof id === 'string' ? id : randomUUID();
}

export const routeNotFound: RequestHandler = (_req, _res, next) => next(notFound());

/** body-parser marks its own errors with `type`; anything else is the lab's (or a machine's) fault. */
function bodyParserErrorType(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('type' in err)) return undefined;
  return typeof err.type === 'string' ? err.type : undefined;
}

export function errorHandler(log: (line: string) => void): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (err instanceof ApiError) return sendError(res, err);
    const parserError = bodyParserErrorType(err);
    if (parserError === 'entity.parse.failed') return sendError(res, badRequest('error parsing request body'));
    if (parserError === 'entity.too.large') {
      return sendError(res, new ApiError(413, 'request_entity_too_large', 'request body is too large'));
    }
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`do-standin: ${req.method} ${req.originalUrl} failed: ${detail}`);
    sendError(res, serverError());
  };
}
