import type { RequestHandler } from 'express';

/** Enough to see what a test or a demo run just did, bounded so a long lab session stays small. */
export const MAX_LOGGED_REQUESTS = 1_000;

export interface LoggedRequest {
  method: string;
  path: string;
  status: number;
  at: string;
}

/** What reached the API: counts by "METHOD /path" (no query), and the most recent requests. */
export class RequestLog {
  private readonly counts = new Map<string, number>();
  private entries: LoggedRequest[] = [];

  arrived(method: string, path: string): void {
    const key = `${method} ${path}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  answered(entry: LoggedRequest): void {
    this.entries.push(entry);
    if (this.entries.length > MAX_LOGGED_REQUESTS) this.entries.shift();
  }

  count(method: string, path: string): number {
    return this.counts.get(`${method} ${path}`) ?? 0;
  }

  snapshot(): { total: number; counts: Record<string, number>; recent: LoggedRequest[] } {
    let total = 0;
    for (const n of this.counts.values()) total += n;
    return { total, counts: Object.fromEntries(this.counts), recent: [...this.entries] };
  }

  clear(): void {
    this.counts.clear();
    this.entries = [];
  }
}

/** Counted on arrival, so a request that a fault or a 401 turns away still shows as having reached the API. */
export function logRequests(log: RequestLog): RequestHandler {
  return (req, res, next) => {
    const path = new URL(req.originalUrl, 'http://x').pathname;
    log.arrived(req.method, path);
    res.on('close', () => log.answered({ method: req.method, path, status: res.statusCode, at: new Date().toISOString() }));
    next();
  };
}
