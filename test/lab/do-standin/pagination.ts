import type { Request } from 'express';
import { queryParam, requestUrl } from './request.js';

export const DEFAULT_PER_PAGE = 20;
export const MAX_PER_PAGE = 200;

export interface PageLinks {
  first?: string;
  prev?: string;
  next?: string;
  last?: string;
}

export interface Page<T> {
  items: T[];
  /** DigitalOcean sends `links: {}` when everything fits on one page. */
  links: { pages?: PageLinks };
  meta: { total: number };
}

function positiveInt(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^[0-9]+$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= 1 ? n : undefined;
}

/**
 * Slices a list the way DigitalOcean does: `page` from 1, `per_page` defaulting to 20 and capped at
 * 200 (DigitalOcean clamps rather than rejects), and only the links that lead somewhere: first/prev
 * after page 1, next/last before the last page. Other query parameters (tag_name) are kept in them.
 */
export function paginate<T>(req: Request, all: readonly T[]): Page<T> {
  const perPage = Math.min(positiveInt(queryParam(req, 'per_page')) ?? DEFAULT_PER_PAGE, MAX_PER_PAGE);
  const page = positiveInt(queryParam(req, 'page')) ?? 1;
  const lastPage = Math.max(1, Math.ceil(all.length / perPage));
  const items = all.slice((page - 1) * perPage, page * perPage);

  const url = requestUrl(req);
  url.searchParams.delete('page');
  url.searchParams.delete('per_page');
  const link = (n: number) => {
    const target = new URL(url);
    target.searchParams.set('page', String(n));
    target.searchParams.set('per_page', String(perPage));
    return target.toString();
  };
  const pages: PageLinks = {};
  if (page > 1) {
    pages.first = link(1);
    pages.prev = link(Math.min(page - 1, lastPage));
  }
  if (page < lastPage) {
    pages.next = link(page + 1);
    pages.last = link(lastPage);
  }
  return { items, links: Object.keys(pages).length > 0 ? { pages } : {}, meta: { total: all.length } };
}
