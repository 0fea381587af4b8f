import type { Request, RequestHandler } from 'express';
import { unauthorized } from './errors.js';

export function bearerToken(req: Request): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
  return match?.[1];
}

export function requireToken(tokens: ReadonlySet<string>): RequestHandler {
  return (req, _res, next) => {
    const token = bearerToken(req);
    next(token !== undefined && tokens.has(token) ? undefined : unauthorized());
  };
}
