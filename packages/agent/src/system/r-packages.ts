import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { APT_LOCK_TIMEOUT_SECONDS, parseDcf, R_PACKAGES_FAILED_LOG_LINES, R_PACKAGES_INSTALL_TIMEOUT_MS, R_PACKAGES_OUTPUT_KEPT_LINES, R_REPO_INDEX_MAX_BYTES, R_REPO_INDEX_TIMEOUT_MS, splitDependencyField } from '@plumb/shared';

/**
 * What the droplet has and can get, for R packages: R's libraries (asked of R itself), Debian's
 * archive (apt-cache, apt-get) and CRAN-like repositories (their src/contrib/PACKAGES index).
 */

export interface InstalledCopy {
  version: string;
  /** The library it loads from, the first in the workers' search order that has it. */
  library: string;
}

export interface RLibraries {
  rVersion: string;
  installed: Map<string, InstalledCopy>;
}

/**
 * Every installed package as a worker of the API sees them: its own library first, then R's
 * (site libraries, then R's own). One line per package: name, version, library.
 */
const INSPECT_R = `
lib <- commandArgs(TRUE)[1]
ip <- installed.packages(lib.loc = c(lib, .libPaths()), noCache = TRUE)
ip <- ip[!duplicated(ip[, "Package"]), , drop = FALSE]
cat("R", paste(R.version$major, R.version$minor, sep = "."), "\\n", sep = "\\t")
if (nrow(ip) > 0) cat(paste(ip[, "Package"], ip[, "Version"], ip[, "LibPath"], sep = "\\t"), sep = "\\n")
`;

/** R's environment for plumb's own R runs: no user library, nothing from the agent's environment. */
const R_ENV = { R_LIBS: '', R_LIBS_USER: '/nonexistent', R_PROFILE_USER: '/dev/null', R_ENVIRON_USER: '/dev/null' };

export async function inspectLibraries(apiLibrary: string): Promise<RLibraries> {
  const result = await execa('Rscript', ['--vanilla', '-e', INSPECT_R, apiLibrary], { env: R_ENV, timeout: 60_000, reject: false });
  if (result.exitCode !== 0) throw new Error(`R could not list its packages: ${(result.stderr || result.stdout).split('\n').slice(-3).join(' | ')}`);
  const installed = new Map<string, InstalledCopy>();
  let rVersion = 'unknown';
  for (const line of result.stdout.split('\n')) {
    const [name = '', version = '', library = ''] = line.split('\t');
    if (name === 'R') rVersion = version;
    else if (name && version && !installed.has(name)) installed.set(name, { version, library });
  }
  return { rVersion, installed };
}

/** Debian's binary package for an R package: r-cran-NAME (lower case), else r-bioc-NAME. */
export const debianNames = (name: string) => [`r-cran-${name.toLowerCase()}`, `r-bioc-${name.toLowerCase()}`];

export interface DebianCandidate {
  deb: string;
  /** Debian's version, e.g. 0.1-3+dfsg-1: the R version is the part before "-" / "+". */
  debVersion: string;
}

/** The Debian packages apt could install for these R packages (apt-cache policy; no network). */
export async function debianCandidates(names: string[]): Promise<Map<string, DebianCandidate>> {
  const found = new Map<string, DebianCandidate>();
  if (names.length === 0) return found;
  const result = await execa('apt-cache', ['policy', ...names.flatMap(debianNames)], { env: { LC_ALL: 'C' }, timeout: 60_000, reject: false });
  const candidates = new Map<string, string>();
  let current = '';
  for (const line of result.stdout.split('\n')) {
    const head = /^(\S+):$/.exec(line);
    if (head) current = head[1] ?? '';
    const candidate = /^\s+Candidate:\s+(\S+)/.exec(line)?.[1];
    if (candidate && candidate !== '(none)') candidates.set(current, candidate);
  }
  for (const name of names) {
    const deb = debianNames(name).find((d) => candidates.has(d));
    if (deb) found.set(name, { deb, debVersion: candidates.get(deb) ?? '' });
  }
  return found;
}

/** The R package version inside a Debian version: 1.4-1+dfsg-2 → 1.4-1 (epoch and Debian revision dropped). */
export function upstreamVersion(debVersion: string): string {
  const noEpoch = debVersion.replace(/^\d+:/, '');
  const noRevision = noEpoch.includes('-') ? noEpoch.slice(0, noEpoch.lastIndexOf('-')) : noEpoch;
  return noRevision.replace(/[+~].*$/, '');
}

/** A package as a CRAN-like repository lists it. */
export interface RepoPackage {
  name: string;
  version: string;
  /** Depends, Imports and LinkingTo, names only. */
  dependencies: string[];
  needsCompilation: boolean;
}

export async function readRepoIndex(repo: string): Promise<Map<string, RepoPackage>> {
  const url = `${repo.replace(/\/+$/, '')}/src/contrib/PACKAGES`;
  const response = await fetch(url, { signal: AbortSignal.timeout(R_REPO_INDEX_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
  const tooLarge = () => new Error(`${url} is over ${R_REPO_INDEX_MAX_BYTES} bytes`);
  if (Number(response.headers.get('content-length') ?? 0) > R_REPO_INDEX_MAX_BYTES) throw tooLarge();
  // Counted as it arrives: a body without a length (chunked) may not end.
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    // Leaving the loop cancels the download.
    if (size > R_REPO_INDEX_MAX_BYTES) break;
    chunks.push(chunk);
  }
  if (size > R_REPO_INDEX_MAX_BYTES) throw tooLarge();
  const text = Buffer.concat(chunks).toString('utf8');
  const index = new Map<string, RepoPackage>();
  for (const record of parseDcf(text)) {
    const name = record['Package'];
    const version = record['Version'];
    if (!name || !version) continue;
    const dependencies = ['Depends', 'Imports', 'LinkingTo'].flatMap((f) => splitDependencyField(record[f] ?? '')).map((d) => d.split(/[\s(]/)[0] ?? '').filter((d) => d !== '' && d !== 'R');
    index.set(name, { name, version, dependencies: [...new Set(dependencies)], needsCompilation: record['NeedsCompilation'] === 'yes' });
  }
  return index;
}

/** A command's output, line by line, as it comes; its last lines kept for an error. */
export interface CommandRun {
  exitCode: number;
  /** At most R_PACKAGES_OUTPUT_KEPT_LINES. */
  lines: string[];
  timedOut: boolean;
}

/** The lines about one package in R's install output (from "installing … ‘NAME’" to its end), or the last lines. */
export function outputAbout(lines: string[], name: string | undefined): string[] {
  const start = name === undefined ? -1 : lines.findIndex((l) => l.includes(`package ‘${name}’`) && /installing/.test(l));
  if (start < 0) return lines.slice(-R_PACKAGES_FAILED_LOG_LINES);
  const rest = lines.slice(start);
  const end = rest.findIndex((l) => /^\* (DONE|removing)/.test(l));
  return (end < 0 ? rest : rest.slice(0, end + 1)).slice(-R_PACKAGES_FAILED_LOG_LINES);
}

async function runStreaming(file: string, args: string[], env: Record<string, string>, onLine: (line: string) => void): Promise<CommandRun> {
  const child = execa(file, args, { env, all: true, reject: false, timeout: R_PACKAGES_INSTALL_TIMEOUT_MS, stdin: 'ignore' });
  const lines: string[] = [];
  if (child.all) {
    for await (const line of createInterface({ input: child.all, crlfDelay: Infinity })) {
      lines.push(line);
      if (lines.length > R_PACKAGES_OUTPUT_KEPT_LINES) lines.shift();
      onLine(line);
    }
  }
  const result = await child;
  return { exitCode: result.exitCode ?? -1, lines, timedOut: result.timedOut };
}

/** apt-get install, without recommends, waiting for another apt's lock rather than failing. */
export function aptInstall(debs: string[], onLine: (line: string) => void): Promise<CommandRun> {
  return runStreaming('apt-get', ['install', '-y', '--no-install-recommends', '-o', `DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_SECONDS}`, ...debs], { DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' }, onLine);
}

export function aptUpdate(onLine: (line: string) => void): Promise<CommandRun> {
  return runStreaming('apt-get', ['update', '-o', `DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT_SECONDS}`], { LC_ALL: 'C' }, onLine);
}

/**
 * Installs packages from CRAN-like repositories into `staging` with R's own install.packages:
 * `current` by name (the version the repositories list), `archived` from their tarball's URL (a
 * pinned older version). The API's library and R's are on the search path, so what is there
 * already is used. Ends with "plumb-missing: NAME" lines for what did not end up in `staging`.
 */
const INSTALL_R = `
args <- commandArgs(TRUE)
staging <- args[1]; apilib <- args[2]; repos <- strsplit(args[3], " ", fixed = TRUE)[[1]]
current <- if (nzchar(args[4])) strsplit(args[4], " ", fixed = TRUE)[[1]] else character()
archived <- if (nzchar(args[5])) strsplit(args[5], " ", fixed = TRUE)[[1]] else character()
.libPaths(c(staging, apilib, .libPaths()))
# Parallel installs need make, which only r-base-dev (the compilers) brings.
options(repos = repos, warn = 1, Ncpus = if (nzchar(Sys.which("make"))) max(1L, parallel::detectCores()) else 1L, timeout = 600)
if (length(current) > 0) install.packages(current, lib = staging, dependencies = FALSE, type = "source")
for (url in archived) {
  file <- file.path(tempdir(), basename(url))
  if (download.file(url, file, quiet = TRUE) == 0) install.packages(file, lib = staging, repos = NULL, type = "source")
}
wanted <- c(current, sub("_[^_]*$", "", basename(archived)))
for (p in wanted) if (!file.exists(file.path(staging, p, "DESCRIPTION"))) cat(paste0("plumb-missing: ", p, "\\n"))
`;

export function rInstall(opts: { staging: string; apiLibrary: string; repos: string[]; current: string[]; archived: string[]; tmpDir: string }, onLine: (line: string) => void): Promise<CommandRun> {
  return runStreaming(
    'Rscript',
    ['--vanilla', '-e', INSTALL_R, opts.staging, opts.apiLibrary, opts.repos.join(' '), opts.current.join(' '), opts.archived.join(' ')],
    { ...R_ENV, TMPDIR: opts.tmpDir, LC_ALL: 'C.UTF-8' },
    onLine,
  );
}

/** Whether a C compiler is there for packages with compiled code (r-base-dev brings it). */
export async function hasCompiler(): Promise<boolean> {
  return (await execa('sh', ['-c', 'command -v gcc && command -v make'], { reject: false })).exitCode === 0;
}

/** Hard links of these directories' trees in `into` (cp -al): a new library generation shares the files of the one it grew from. */
export async function linkTree(sources: string[], into: string): Promise<void> {
  const result = await execa('cp', ['-al', '--', ...sources, into], { reject: false, timeout: 120_000 });
  if (result.exitCode !== 0) throw new Error(`could not link the R library's packages: ${result.stderr.trim().split('\n').slice(-2).join(' ')}`);
}
