import type { Request } from 'express';

/** One query parameter as a string; a repeated parameter counts as absent, as it is ambiguous. */
export function queryParam(req: Request, name: string): string | undefined {
  const value: unknown = (req.query as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

/** A decimal id from the path; anything else names no resource, hence undefined (-> 404). */
export function pathId(req: Request, name: string): number | undefined {
  const raw: unknown = req.params[name];
  if (typeof raw !== 'string' || !/^[1-9][0-9]{0,15}$/.test(raw)) return undefined;
  const id = Number(raw);
  return Number.isSafeInteger(id) ? id : undefined;
}

/** The URL the client used, for links that point back at the stand-in rather than at DigitalOcean. */
export function requestUrl(req: Request): URL {
  return new URL(req.originalUrl, `${req.protocol}://${req.get('host') ?? 'localhost'}`);
}
