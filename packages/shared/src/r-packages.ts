/**
 * R's own formats, read the same way on both ends: DCF files (DESCRIPTION, a repository's
 * PACKAGES) and package version order. Pure functions, no I/O.
 */

/** The packages every R has: they come with R itself, are never installed and never need to be. */
export const BASE_R_PACKAGES: ReadonlySet<string> = new Set(['base', 'compiler', 'datasets', 'graphics', 'grDevices', 'grid', 'methods', 'parallel', 'splines', 'stats', 'stats4', 'tcltk', 'tools', 'utils']);

/** Debian Control File records (DESCRIPTION, PACKAGES): blank-line separated, continuation lines indented. */
export function parseDcf(text: string): Record<string, string>[] {
  const records: Record<string, string>[] = [];
  let current: Record<string, string> = {};
  let last: string | undefined;
  for (const line of text.replace(/\r\n?/g, '\n').split('\n')) {
    if (line.trim() === '') {
      if (Object.keys(current).length > 0) records.push(current);
      current = {};
      last = undefined;
    } else if (/^\s/.test(line) && last !== undefined) {
      current[last] = `${current[last]}\n${line.trim()}`;
    } else {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      last = line.slice(0, colon).trim();
      current[last] = line.slice(colon + 1).trim();
    }
  }
  if (Object.keys(current).length > 0) records.push(current);
  return records;
}

export function splitDependencyField(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.replace(/\s+/g, ' ').trim())
    .filter((s) => s !== '');
}

/** R's version order (package_version): numeric parts split at "." and "-". */
export function compareRVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map(Number);
  const pb = b.split(/[.-]/).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}
