import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BASE_R_PACKAGES, parseDcf, RPackageName, RPackageVersion, splitDependencyField, ValidationError, type RPackageNeed } from '@plumb/shared';

/**
 * Which R packages an API needs, worked out on the user's machine before anything is sent
 * (docs/r-packages.md): renv.lock when there is one, else a DESCRIPTION, else a scan of the code.
 * Everything but readDependencyFiles is a pure function of file contents.
 */

/**
 * R's recommended packages. Debian ships them as separate packages (r-cran-mass, …) that
 * r-base-core only recommends, so a droplet (no recommends) has none of them: they are not
 * dropped like the base packages, but found installed or installed like any other.
 */
export const RECOMMENDED_PACKAGES = new Set(['boot', 'class', 'cluster', 'codetools', 'foreign', 'KernSmooth', 'lattice', 'MASS', 'Matrix', 'mgcv', 'nlme', 'nnet', 'rpart', 'spatial', 'survival']);

/** renv manages a library of its own; on a droplet plumb's per-API library replaces it. */
const NOT_NEEDED = new Set(['R', 'renv']);

export type DependencySource = 'renv.lock' | 'DESCRIPTION' | 'code';

export interface DetectedDependencies {
  source: DependencySource;
  needs: RPackageNeed[];
  /** Worth telling the user: packages from GitHub in renv.lock, versions that cannot be read, … */
  notes: string[];
  /** renv.lock's R version, to compare with the droplet's. */
  rVersion: string | null;
}

const isPackageName = (name: string) => RPackageName.safeParse(name).success;

/** renv.lock: every package with its exact version; renv itself left out. */
export function fromRenvLock(text: string, file = 'renv.lock'): DetectedDependencies {
  let lock: unknown;
  try {
    lock = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`${file} is not valid JSON: ${(err as Error).message}`, 'fix it (renv::snapshot() writes it) or remove it so the code is scanned instead');
  }
  const packages = (lock as { Packages?: unknown }).Packages;
  if (typeof packages !== 'object' || packages === null) throw new ValidationError(`${file} has no "Packages" object`, 'renv::snapshot() writes a valid one');
  const needs: RPackageNeed[] = [];
  const notes: string[] = [];
  for (const [key, value] of Object.entries(packages as Record<string, unknown>)) {
    const entry = (value ?? {}) as { Package?: unknown; Version?: unknown; Source?: unknown; RemoteType?: unknown; RemoteRepo?: unknown; RemoteUsername?: unknown };
    const name = typeof entry.Package === 'string' ? entry.Package : key;
    if (NOT_NEEDED.has(name) || BASE_R_PACKAGES.has(name)) continue;
    if (!isPackageName(name)) throw new ValidationError(`${file} names the package ${JSON.stringify(name)}, which is not an R package name`);
    const version = typeof entry.Version === 'string' && RPackageVersion.safeParse(entry.Version).success ? entry.Version : null;
    if (version === null) notes.push(`${name}: ${file} gives no usable version (${JSON.stringify(entry.Version)}); any version will do`);
    const origin = typeof entry.Source === 'string' ? entry.Source : 'Repository';
    if (!['Repository', 'Bioconductor'].includes(origin)) {
      const remote = typeof entry.RemoteUsername === 'string' && typeof entry.RemoteRepo === 'string' ? ` ${entry.RemoteUsername}/${entry.RemoteRepo}` : '';
      notes.push(`${name}: ${file} says it came from ${origin}${remote}; plumb installs it from Debian or a CRAN-like repository instead`);
    }
    needs.push({ name, version: version === null ? null : { op: '==', version }, reason: file });
  }
  const r = (lock as { R?: { Version?: unknown } }).R?.Version;
  return { source: 'renv.lock', needs: sortNeeds(needs), notes, rVersion: typeof r === 'string' && RPackageVersion.safeParse(r).success ? r : null };
}

/** A DESCRIPTION file: Depends, Imports and LinkingTo, with their version requirements. */
export function fromDescription(text: string, file = 'DESCRIPTION'): DetectedDependencies {
  const fields = parseDcf(text)[0] ?? {};
  const needs = new Map<string, RPackageNeed>();
  const notes: string[] = [];
  for (const field of ['Depends', 'Imports', 'LinkingTo']) {
    for (const item of splitDependencyField(fields[field] ?? '')) {
      const match = /^([A-Za-z][A-Za-z0-9.]*)\s*(?:\(\s*([<>=!]=?)\s*([^)\s]+)\s*\))?$/.exec(item);
      if (!match) throw new ValidationError(`${file}: cannot read "${item}" in ${field}`, 'write each package as NAME or NAME (>= VERSION), separated by commas');
      const [, name = '', op, version] = match;
      if (NOT_NEEDED.has(name) || BASE_R_PACKAGES.has(name)) continue;
      let constraint: RPackageNeed['version'] = null;
      if (op && version) {
        if (!RPackageVersion.safeParse(version).success) throw new ValidationError(`${file}: "${version}" in ${field} is not an R package version`);
        if (op === '==') constraint = { op: '==', version };
        else if (op === '>=' || op === '>') constraint = { op: '>=', version };
        else notes.push(`${name}: "${op} ${version}" in ${file} is not checked (only >=, > and == are)`);
      }
      const previous = needs.get(name);
      if (!previous || (previous.version === null && constraint !== null)) needs.set(name, { name, version: constraint, reason: `${file} ${field}` });
    }
  }
  return { source: 'DESCRIPTION', needs: sortNeeds([...needs.values()]), notes, rVersion: null };
}

/** What one R file says it loads. */
export interface CodeUse {
  /** Packages, each with the first way it is used (`library(x)`, `x::fn`). */
  packages: Map<string, string>;
  /** plumber features that need a package plumber only suggests. */
  features: Map<string, string>;
}

type Token = { kind: 'name' | 'string' | 'op'; text: string };

/**
 * R's tokens, enough to find package uses: comments dropped, strings (also raw strings
 * r"(...)") kept as one token, so `library("x")` is found and "pkg::fn" inside text is not.
 */
export function tokenize(code: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < code.length) {
    const c = code[i] ?? '';
    if (c === '#') {
      const end = code.indexOf('\n', i);
      i = end < 0 ? code.length : end;
    } else if (/\s/.test(c)) {
      i++;
    } else if (/[rR]/.test(c) && /["']/.test(code[i + 1] ?? '')) {
      const raw = /^[rR](["'])(-*)([([{])/.exec(code.slice(i, i + 200));
      if (!raw) {
        i = readName(code, i, tokens);
        continue;
      }
      const close = { '(': ')', '[': ']', '{': '}' }[raw[3] as '(' | '[' | '{'];
      const terminator = `${close}${raw[2]}${raw[1]}`;
      const end = code.indexOf(terminator, i + raw[0].length);
      const stop = end < 0 ? code.length : end;
      tokens.push({ kind: 'string', text: code.slice(i + raw[0].length, stop) });
      i = end < 0 ? code.length : end + terminator.length;
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      let text = '';
      while (j < code.length && code[j] !== c) {
        if (code[j] === '\\') j++;
        text += code[j] ?? '';
        j++;
      }
      tokens.push({ kind: c === '`' ? 'name' : 'string', text });
      i = j + 1;
    } else if (/[A-Za-z.]/.test(c)) {
      i = readName(code, i, tokens);
    } else if (code.startsWith(':::', i)) {
      tokens.push({ kind: 'op', text: ':::' });
      i += 3;
    } else if (code.startsWith('::', i)) {
      tokens.push({ kind: 'op', text: '::' });
      i += 2;
    } else {
      tokens.push({ kind: 'op', text: c });
      i++;
    }
  }
  return tokens;
}

function readName(code: string, i: number, tokens: Token[]): number {
  const match = /^[A-Za-z.][A-Za-z0-9._]*/.exec(code.slice(i, i + 200));
  const text = match?.[0] ?? code[i] ?? '';
  tokens.push({ kind: 'name', text });
  return i + Math.max(text.length, 1);
}

/** The calls that load a package whose first argument names it. */
const LOADERS = new Set(['library', 'require', 'requireNamespace', 'loadNamespace', 'attachNamespace']);

/**
 * plumber's optional features and the packages they need (plumber lists them in Suggests and
 * checks for them only when the feature is used). Keys are serializer/parser names as in
 * `#* @serializer NAME` and `serializer_NAME()`.
 */
const SERIALIZER_PACKAGES: Record<string, string[]> = {
  csv: ['readr'],
  tsv: ['readr'],
  feather: ['arrow'],
  parquet: ['arrow'],
  arrow_ipc_stream: ['arrow'],
  excel: ['writexl'],
  yaml: ['yaml'],
  geojson: ['geojsonsf'],
  htmlwidget: ['htmlwidgets'],
  agg_png: ['ragg'],
  agg_jpeg: ['ragg'],
  agg_tiff: ['ragg'],
  svglite: ['svglite'],
};
const PARSER_PACKAGES: Record<string, string[]> = {
  csv: ['readr'],
  tsv: ['readr'],
  feather: ['arrow'],
  parquet: ['arrow'],
  arrow_ipc_stream: ['arrow'],
  excel: ['readxl'],
  yaml: ['yaml'],
  geojson: ['geojsonsf'],
};
/** Functions of plumber (or promises) whose use needs a suggested package. */
const FUNCTION_PACKAGES: Record<string, { packages: string[]; feature: string }> = {
  session_cookie: { packages: ['sodium', 'base64enc'], feature: 'encrypted session cookies (session_cookie)' },
  pr_cookie: { packages: ['sodium', 'base64enc'], feature: 'encrypted session cookies (pr_cookie)' },
  future_promise: { packages: ['future'], feature: 'async with future_promise' },
  include_rmd: { packages: ['rmarkdown'], feature: 'include_rmd' },
  include_md: { packages: ['rmarkdown'], feature: 'include_md' },
};
const DOCS_PACKAGES: Record<string, string> = { redoc: 'redoc', rapidoc: 'rapidoc' };

/** One R file: the packages it loads or calls into, and the plumber features that need one. */
export function scanRCode(code: string): CodeUse {
  const packages = new Map<string, string>();
  const features = new Map<string, string>();
  const addFeature = (pkgs: string[], feature: string) => pkgs.forEach((p) => features.has(p) || features.set(p, feature));
  const tokens = tokenize(code);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const next = tokens[i + 1];
    if (t.kind === 'name' && next?.kind === 'op' && (next.text === '::' || next.text === ':::')) {
      const fn = tokens[i + 2]?.text ?? '';
      if (isPackageName(t.text) && !packages.has(t.text)) packages.set(t.text, `${t.text}${next.text}${fn}`);
      continue;
    }
    if (t.kind !== 'name' || next?.text !== '(') continue;
    const called = t.text;
    if (LOADERS.has(called)) {
      const name = loadedPackage(tokens, i + 2);
      if (name && isPackageName(name) && !packages.has(name)) packages.set(name, `${called}(${name})`);
    }
    const fnFeature = FUNCTION_PACKAGES[called];
    if (fnFeature) addFeature(fnFeature.packages, fnFeature.feature);
    const serializer = /^serializer_(.+)$/.exec(called)?.[1];
    if (serializer && SERIALIZER_PACKAGES[serializer]) addFeature(SERIALIZER_PACKAGES[serializer], `the ${serializer} serializer`);
    const parser = /^parser_(.+)$/.exec(called)?.[1];
    if (parser && PARSER_PACKAGES[parser]) addFeature(PARSER_PACKAGES[parser], `the ${parser} parser`);
    if (called === 'pr_set_docs' || called === 'plumb_api') {
      const docs = tokens[i + 2];
      if (docs?.kind === 'string' && DOCS_PACKAGES[docs.text]) addFeature([DOCS_PACKAGES[docs.text]!], `the ${docs.text} docs`);
    }
  }
  // plumber's comment annotations: #* @serializer csv, #' @parser feather.
  for (const match of code.matchAll(/^\s*#['*]\s*@(serializer|parser)\s+([A-Za-z_][A-Za-z0-9_]*)/gm)) {
    const [, kind, name = ''] = match;
    const table = kind === 'serializer' ? SERIALIZER_PACKAGES : PARSER_PACKAGES;
    if (table[name]) addFeature(table[name], `the ${name} ${kind}`);
  }
  return { packages, features };
}

/** The package a loader call names: its first argument (or `package=`), a name or a string. */
function loadedPackage(tokens: Token[], start: number): string | undefined {
  let depth = 0;
  let positional: Token | undefined;
  for (let i = start; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.text === '(') depth++;
    else if (t.text === ')') {
      if (depth === 0) break;
      depth--;
    } else if (depth === 0 && t.kind === 'name' && (t.text === 'package' || t.text === 'pkg') && tokens[i + 1]?.text === '=' && tokens[i + 2]?.text !== '=') {
      const value = tokens[i + 2];
      return value && (value.kind === 'string' || value.kind === 'name') ? value.text : undefined;
    } else if (depth === 0 && positional === undefined && i === start) {
      positional = t;
    }
  }
  // `library(x, character.only = TRUE)` names a variable, not a package: only a string counts then.
  const characterOnly = tokens.slice(start, start + 12).some((t, k, all) => t.text === 'character.only' && all[k + 2]?.text === 'TRUE');
  if (!positional || tokens[start + 1]?.text === '=') return undefined;
  if (positional.kind === 'string') return positional.text;
  return positional.kind === 'name' && !characterOnly ? positional.text : undefined;
}

/** Every .R file of the bundle scanned; base packages dropped; plumber features added. */
export function fromCode(files: Record<string, string>): DetectedDependencies {
  const needs = new Map<string, RPackageNeed>();
  for (const [file, code] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
    const use = scanRCode(code);
    for (const [name, how] of use.packages) {
      if (!BASE_R_PACKAGES.has(name) && !NOT_NEEDED.has(name) && !needs.has(name)) needs.set(name, { name, version: null, reason: `${file}: ${how}` });
    }
  }
  return { source: 'code', needs: sortNeeds([...needs.values()]), notes: [], rVersion: null };
}

/** The packages plumber's features used in the code need, beyond what `detected` lists already. */
export function withFeatureNeeds(detected: DetectedDependencies, files: Record<string, string>): DetectedDependencies {
  const names = new Set(detected.needs.map((n) => n.name));
  const extra: RPackageNeed[] = [];
  for (const [file, code] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
    for (const [name, feature] of scanRCode(code).features) {
      if (names.has(name)) continue;
      names.add(name);
      extra.push({ name, version: null, reason: `${file}: ${feature}` });
    }
  }
  return { ...detected, needs: sortNeeds([...detected.needs, ...extra]) };
}

/** The API's needs from its files (path → content): renv.lock, else DESCRIPTION, else the code. */
export function detectDependencies(files: Record<string, string>): DetectedDependencies {
  const rFiles = Object.fromEntries(Object.entries(files).filter(([f]) => /\.r$/i.test(f) && !/^(renv|packrat)\//.test(f)));
  const base = files['renv.lock'] !== undefined ? fromRenvLock(files['renv.lock']) : files['DESCRIPTION'] !== undefined ? fromDescription(files['DESCRIPTION']) : fromCode(rFiles);
  return withFeatureNeeds(base, rFiles);
}

function sortNeeds(needs: RPackageNeed[]): RPackageNeed[] {
  return needs.sort((a, b) => a.name.localeCompare(b.name));
}

/** The files detection reads, from an API directory's bundle list: its .R files, renv.lock and DESCRIPTION at the top. */
export async function readDependencyFiles(dir: string, files: string[]): Promise<Record<string, string>> {
  const wanted = files.filter((f) => /\.r$/i.test(f) || f === 'renv.lock' || f === 'DESCRIPTION');
  const contents: Record<string, string> = {};
  for (const file of wanted) contents[file] = await readFile(path.join(dir, file), 'utf8');
  return contents;
}

/** One line per need, as `plumb deps` and `plumb deploy` show them. */
export function describeNeed(need: RPackageNeed): string {
  return `${need.name}${need.version ? ` (${need.version.op} ${need.version.version})` : ''}`;
}
