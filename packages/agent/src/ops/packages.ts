import { createHash, randomBytes } from 'node:crypto';
import { access, chmod, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  BASE_R_PACKAGES,
  compareRVersions,
  DEFAULT_CRAN_URL,
  PackagesReport,
  PlumbError,
  R_PACKAGES_FAILED_LOG_LINES,
  type InstalledRPackage,
  type PackagePlanItem,
  type PackagesPlan,
  type PackagesResult,
  type PackagesSpec,
  type ReposResult,
  type RPackageNeed,
  type RPackageSource,
} from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import * as z from 'zod';
import { log } from '../log.js';
import { layout } from '../system/layout.js';
import { aptInstall, aptUpdate, debianCandidates, hasCompiler, inspectLibraries, linkTree, outputAbout, readRepoIndex, rInstall, upstreamVersion, type CommandRun, type DebianCandidate, type InstalledCopy, type RepoPackage, type RLibraries } from '../system/r-packages.js';
import { LibraryGeneration, liveRelease, type AgentState, type ApiRecord, type Release } from '../state.js';
import { PACKAGE_CHECKS_LOCK, SHARED, StepError, type OpContext } from './context.js';
import { requireApi } from './routing.js';

/**
 * An API's R packages (docs/r-packages.md): what is there already costs nothing; the rest comes
 * from Debian's archive (apt, R's system library), else a binary repository, else a source build
 * (both into the API's own library). Repository and source installs are built in a staging
 * directory; only once all of them succeeded do they make a new generation of the library: the
 * live one's packages (hard links) with the new ones in place. A generation is never changed
 * once made, so workers of other releases keep loading theirs and a rollback loads its
 * release's packages again; it is named by a hash of what it holds, so a set of packages is
 * installed once, and it goes when no kept release names it.
 */

/** The repositories an install uses. */
export interface Repos {
  source: string;
  binary: string | null;
}

/** The API's own (this deploy's --repo, else an earlier one), else the droplet's (`plumb repos`), else CRAN. */
export function reposFor(api: { repo: string | null; binaryRepo: string | null }, state: AgentState): Repos {
  return { source: api.repo ?? state.packageRepos.repo ?? DEFAULT_CRAN_URL, binary: api.binaryRepo ?? state.packageRepos.binaryRepo ?? null };
}

/** `plumb repos`: the droplet's default repositories, changed where the request says. */
export async function setRepos(change: { repo?: string | null | undefined; binaryRepo?: string | null | undefined }, ctx: OpContext): Promise<ReposResult> {
  const next = await ctx.locks.with(SHARED, () =>
    ctx.state.update((s) => ({
      ...s,
      packageRepos: { repo: change.repo === undefined ? s.packageRepos.repo : change.repo, binaryRepo: change.binaryRepo === undefined ? s.packageRepos.binaryRepo : change.binaryRepo },
    })),
  );
  return next.packageRepos;
}

/** renv.lock made with another R (major.minor) than the droplet's: worth a warning, not a failure. */
function rVersionWarning(spec: PackagesSpec, rVersion: string): string[] {
  const minor = (v: string) => v.split('.').slice(0, 2).join('.');
  return spec.rVersion !== null && minor(spec.rVersion) !== minor(rVersion) ? [`renv.lock was made with R ${spec.rVersion}; the droplet has R ${rVersion} (Debian 13's)`] : [];
}

/** What R's system libraries hold came from Debian; /usr/local is by hand; the API's library from plumb. */
export function sourceOf(library: string, apiLibrary: string, manifest: Record<string, RPackageSource>, name: string): RPackageSource {
  if (library === apiLibrary) return manifest[name] ?? 'source';
  if (library.startsWith('/usr/lib/R/')) return 'debian';
  return 'local';
}

const satisfies = (copy: InstalledCopy | undefined, need: RPackageNeed) =>
  copy !== undefined && (need.version === null || (need.version.op === '==' ? compareRVersions(copy.version, need.version.version) === 0 : compareRVersions(copy.version, need.version.version) >= 0));

const wanted = (need: RPackageNeed) => (need.version ? ` ${need.version.op} ${need.version.version}` : '');

interface Lookups {
  debian: (names: string[]) => Promise<Map<string, DebianCandidate>>;
  index: (repo: string) => Promise<Map<string, RepoPackage>>;
}

/** A plan item that installs from a repository: where its tarball is when it is a pinned older version. */
interface RepoItem extends PackagePlanItem {
  archiveUrl?: string;
  needsCompilation?: boolean;
}

/**
 * How each needed package gets onto the droplet, dependencies included. A package that is there
 * stays, even at another version, when it came from Debian (a warning says so): binaries are
 * not replaced by builds. One missing or at another version in the API's own library is fetched
 * at the version asked for.
 */
export async function planPackages(needs: readonly RPackageNeed[], libraries: RLibraries, apiLibrary: string, repos: Repos, lookups: Lookups, strict: boolean): Promise<{ items: RepoItem[]; warnings: string[]; errors: string[] }> {
  const items: RepoItem[] = [];
  const warnings: string[] = [];
  const errors: string[] = [];
  const mismatch = (need: RPackageNeed, version: string, where: string) => {
    const text = `${need.name}: ${need.reason} asks for${wanted(need)}, ${where} ${version}`;
    (strict ? errors : warnings).push(text);
  };
  const toFind: RPackageNeed[] = [];
  for (const need of needs) {
    const copy = libraries.installed.get(need.name);
    if (copy && (satisfies(copy, need) || copy.library !== apiLibrary)) {
      if (!satisfies(copy, need)) mismatch(need, copy.version, `the droplet has`);
      items.push({ name: need.name, action: 'present', version: copy.version, from: copy.library, dependency: false, reason: need.reason });
    } else toFind.push(need);
  }

  const debian = await lookups.debian(toFind.filter((n) => !libraries.installed.has(n.name)).map((n) => n.name));
  const fromRepos: RPackageNeed[] = [];
  for (const need of toFind) {
    const candidate = debian.get(need.name);
    if (!candidate) {
      fromRepos.push(need);
      continue;
    }
    const version = upstreamVersion(candidate.debVersion);
    if (!satisfies({ version, library: '' }, need)) mismatch(need, version, `Debian has`);
    items.push({ name: need.name, action: 'debian', version, from: candidate.deb, dependency: false, reason: need.reason });
  }
  if (fromRepos.length === 0) return { items, warnings, errors };

  const indexes: { repo: string; action: 'repository' | 'source'; index: Map<string, RepoPackage> }[] = [];
  const unreadable: string[] = [];
  for (const [repo, action] of [[repos.binary, 'repository'], [repos.source, 'source']] as const) {
    if (repo === null) continue;
    try {
      indexes.push({ repo, action, index: await lookups.index(repo) });
    } catch (err) {
      unreadable.push(`${repo} could not be read (${(err as Error).message})`);
    }
  }
  const planned = new Set(items.map((i) => i.name));
  let queue = fromRepos;
  while (queue.length > 0) {
    const deps: RPackageNeed[] = [];
    for (const need of queue) {
      if (planned.has(need.name)) continue;
      planned.add(need.name);
      const found = indexes.find((i) => i.index.has(need.name));
      const listed = found?.index.get(need.name);
      if (!found || !listed) {
        const where = [`Debian's archive (${debianNamesText(need.name)})`, ...indexes.map((i) => i.repo)].join(' or ');
        errors.push(`${need.name}: not found in ${where}${unreadable.length > 0 ? `; ${unreadable.join('; ')}` : ''}`);
        items.push({ name: need.name, action: 'missing', version: null, from: unreadable.join('; ') || 'in no repository', dependency: need.reason.startsWith('needed by '), reason: need.reason });
        continue;
      }
      const pinned = need.version?.op === '==' ? need.version.version : null;
      const archived = pinned !== null && compareRVersions(listed.version, pinned) !== 0;
      if (!archived && !satisfies({ version: listed.version, library: '' }, need)) mismatch(need, listed.version, `${found.repo} has`);
      const sourceRepo = archived ? repos.source : found.repo;
      items.push({
        name: need.name,
        action: archived ? 'source' : found.action,
        version: archived ? pinned : listed.version,
        from: sourceRepo,
        dependency: need.reason.startsWith('needed by '),
        reason: need.reason,
        needsCompilation: listed.needsCompilation,
        ...(archived ? { archiveUrl: `${sourceRepo.replace(/\/+$/, '')}/src/contrib/Archive/${need.name}/${need.name}_${pinned}.tar.gz` } : {}),
      });
      for (const dep of listed.dependencies) {
        if (!planned.has(dep) && !libraries.installed.has(dep) && !BASE_R_PACKAGES.has(dep)) deps.push({ name: dep, version: null, reason: `needed by ${need.name}` });
      }
    }
    const depDebian = await lookups.debian(deps.map((d) => d.name).filter((n) => !planned.has(n)));
    queue = [];
    for (const dep of deps) {
      const candidate = depDebian.get(dep.name);
      if (candidate && !planned.has(dep.name)) {
        planned.add(dep.name);
        items.push({ name: dep.name, action: 'debian', version: upstreamVersion(candidate.debVersion), from: candidate.deb, dependency: true, reason: dep.reason });
      } else queue.push(dep);
    }
  }
  return { items, warnings, errors };
}

const debianNamesText = (name: string) => `r-cran-${name.toLowerCase()}, r-bioc-${name.toLowerCase()}`;

const realLookups: Lookups = { debian: debianCandidates, index: readRepoIndex };

/** `plumb deps`: the plan on this droplet, nothing installed. */
export async function packagesPlan(name: string | null, spec: PackagesSpec, ctx: OpContext): Promise<PackagesPlan> {
  const api = name === null ? undefined : ctx.state.get().apis[name];
  const apiLibrary = (api && liveLibrary(api)) ?? '/nonexistent';
  const libraries = await inspectLibraries(apiLibrary);
  const repos = reposFor({ repo: spec.repo ?? api?.repo ?? null, binaryRepo: spec.binaryRepo ?? api?.binaryRepo ?? null }, ctx.state.get());
  const plan = await planPackages(spec.needs, libraries, apiLibrary, repos, realLookups, spec.strictVersions);
  return { items: plan.items.map(({ archiveUrl: _url, needsCompilation: _compiled, ...item }) => item), warnings: [...rVersionWarning(spec, libraries.rVersion), ...plan.warnings, ...plan.errors], rVersion: libraries.rVersion };
}

const STEP = { debian: 'installing R packages (apt)', repository: 'installing R packages (repository)', source: 'installing R packages (source build)' } as const;

/** Where a release's R library is: its generation, none, or (a release from before generations) `library/` itself. */
export function libraryPath(name: string, library: string | null | undefined): string | null {
  if (library === undefined) return layout.libraryDir(name);
  return library === null ? null : layout.libraryGeneration(name, library);
}

/** The live release's R library, if it has one. */
export function liveLibrary(api: ApiRecord): string | null {
  return libraryPath(api.name, liveRelease(api)?.library);
}

/** What a deploy's packages step gives the new release: the report, and its library generation. */
export interface PackagesInstalled {
  report: PackagesReport;
  library: string | null | undefined;
}

/**
 * Makes the API's packages present before its new release starts, on top of `base` (the live
 * release's generation). Throws a StepError naming the package and the step (apt / repository /
 * source build) with the last lines of its output.
 */
export async function installPackages(name: string, spec: PackagesSpec, repos: Repos, base: string | null | undefined, ctx: OpContext): Promise<PackagesInstalled> {
  const started = Date.now();
  const key = await checkKey(spec, repos, base, libraryPath(name, base));
  const known = (await checkedOnDisk())[name];
  if (known?.key === key) {
    ctx.progress('checking R packages', 'the same as the last deploy asked for, and no R library changed since: not checked again');
    log.info('R packages ready', { api: name, asked: spec.needs.length, installed: 0, library: known.library ?? 'none', checked: false });
    return { library: known.library, report: { ...known.report, installed: [], cached: true, tookMs: Date.now() - started } };
  }
  const result = await checkAndInstall(name, spec, repos, base, ctx, started);
  // Keyed by the state after the install: the next deploy starts from the generation this one made.
  await rememberCheck(name, { key: await checkKey(spec, repos, result.library, libraryPath(name, result.library)), library: result.library, report: result.report }, ctx);
  return result;
}

/**
 * The last package check that passed, per API, kept on disk (0600, layout.packageChecks) so an
 * agent restart or upgrade does not start R again. Starting R to list its libraries is the
 * slowest part of a redeploy whose packages did not change (seconds on a busy droplet); what it
 * found holds while the needs, the repositories, the API's generation and every package R sees
 * stay the same. A file that cannot be read or parsed is an empty cache: the next deploy checks.
 */
const CheckedPackages = z.record(z.string(), z.object({ key: z.string(), library: z.string().nullable().optional(), report: PackagesReport }));
type CheckedPackages = z.infer<typeof CheckedPackages>;

async function checkedOnDisk(): Promise<CheckedPackages> {
  const text = await readFile(layout.packageChecks, 'utf8').catch(() => '{}');
  try {
    const parsed = CheckedPackages.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

/**
 * Deploys of one API hold its lock; two APIs' deploys may end together, and a remove may run
 * beside a deploy: one read-modify-write of the file at a time. Only the API named changes: an
 * API whose first deploy has its packages but is not in the state yet keeps its entry.
 */
function changeChecks(ctx: OpContext, change: (all: CheckedPackages) => CheckedPackages): Promise<void> {
  return ctx.locks.with(PACKAGE_CHECKS_LOCK, async () => {
    await writeFileAtomic(layout.packageChecks, JSON.stringify(change(await checkedOnDisk())), 0o600);
  });
}

const rememberCheck = (name: string, entry: CheckedPackages[string], ctx: OpContext) => changeChecks(ctx, (all) => ({ ...all, [name]: entry }));

/** `plumb remove`: the API's last package check goes with it. */
export const forgetCheck = (name: string, ctx: OpContext) => changeChecks(ctx, ({ [name]: _gone, ...rest }) => rest);

/**
 * What R's answer depends on besides the request: dpkg's database (apt installs, upgrades and
 * removals of Debian's R packages and of R itself), R's site files that set the search path, and
 * in every library R searches (and the API's own generation) the two files R reads of each
 * package, DESCRIPTION and Meta/package.rds: a package added, removed, upgraded or edited by hand
 * changes one of them (their ctime, which `touch` cannot set back) or the library's directory.
 */
const R_SYSTEM_MARKS = ['/var/lib/dpkg/status', '/usr/local/lib/R', '/etc/R', '/etc/R/Renviron', '/etc/R/Renviron.site', '/etc/R/Rprofile.site'];
const R_LIBRARIES = ['/usr/local/lib/R/site-library', '/usr/lib/R/site-library', '/usr/lib/R/library'];
const PACKAGE_FILES_R_READS = ['DESCRIPTION', path.join('Meta', 'package.rds')];

const mark = (file: string) => stat(file).then((s) => `${file} ${s.ino} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`, () => `${file} -`);

async function libraryMarks(dir: string): Promise<string[]> {
  const packages = await readdir(dir).catch(() => undefined);
  if (!packages) return [`${dir} -`];
  return Promise.all([mark(dir), ...packages.sort().flatMap((p) => PACKAGE_FILES_R_READS.map((f) => mark(path.join(dir, p, f))))]);
}

async function checkKey(spec: PackagesSpec, repos: Repos, base: string | null | undefined, baseDir: string | null): Promise<string> {
  const marks = await Promise.all([...R_SYSTEM_MARKS.map(mark), ...[...R_LIBRARIES, baseDir ?? '/nonexistent'].map(libraryMarks)]);
  return createHash('sha256').update(JSON.stringify({ spec, repos, base: base ?? null, marks })).digest('hex');
}

async function checkAndInstall(name: string, spec: PackagesSpec, repos: Repos, base: string | null | undefined, ctx: OpContext, started: number): Promise<PackagesInstalled> {
  const baseDir = libraryPath(name, base);
  const apiLibrary = baseDir ?? '/nonexistent';
  ctx.progress('checking R packages', `${spec.needs.length} asked for`);
  const before = await inspectLibraries(apiLibrary);
  const plan = await planPackages(spec.needs, before, apiLibrary, repos, realLookups, spec.strictVersions);
  if (plan.errors.length > 0) {
    const missing = plan.items.filter((i) => i.action === 'missing');
    const step = missing.length > 0 ? 'finding R packages' : 'checking R package versions';
    throw new StepError(
      missing.length > 0 ? 'R_PACKAGE_NOT_FOUND' : 'R_PACKAGE_VERSION',
      step,
      missing.length > 0 ? `R package${missing.length > 1 ? 's' : ''} ${missing.map((m) => m.name).join(', ')} cannot be installed: ${plan.errors[0]}` : `R package versions differ (--strict-versions): ${plan.errors.join('; ')}`,
      plan.errors,
      missing.length > 0 ? 'check the name, or give a CRAN-like repository that has it with --repo; the previous release is still serving' : 'install the versions asked for, or deploy without --strict-versions',
    );
  }
  const debs = plan.items.filter((i) => i.action === 'debian');
  const fromRepo = plan.items.filter((i) => i.action === 'repository' || i.action === 'source');
  const manifest = await readManifest(apiLibrary);

  if (debs.length > 0) await aptStep(debs.map((d) => d.from), debs.map((d) => d.name), ctx);
  let library = base;
  let built: RepoItem[] = [];
  if (fromRepo.length > 0) {
    const content = new Map([...before.installed].filter(([, c]) => c.library === apiLibrary).map(([pkg, c]) => [pkg, `${c.version} ${manifest[pkg] ?? 'source'}`]));
    for (const item of fromRepo) content.set(item.name, `${item.version ?? ''} ${item.action}`);
    library = generationOf(content);
    if (await exists(layout.libraryGeneration(name, library))) {
      ctx.progress('checking R packages', `library ${library} of an earlier release has them`);
    } else {
      if (fromRepo.some((i) => i.action === 'source' && i.needsCompilation) && !(await hasCompiler())) await aptStep(['r-base-dev'], ['the compilers for source builds'], ctx);
      await repoStep(name, fromRepo, repos, { dir: baseDir, manifest }, library, ctx);
      built = fromRepo;
    }
  }

  const libraryDir = libraryPath(name, library);
  const after = debs.length + fromRepo.length > 0 ? await inspectLibraries(libraryDir ?? '/nonexistent') : before;
  const newManifest = libraryDir === apiLibrary ? manifest : await readManifest(libraryDir ?? '/nonexistent');
  const describe = (pkg: string): InstalledRPackage | undefined => {
    const copy = after.installed.get(pkg);
    return copy && { name: pkg, version: copy.version, source: sourceOf(copy.library, libraryDir ?? '/nonexistent', newManifest, pkg), library: copy.library };
  };
  const installedNames = [...debs, ...built].map((i) => i.name);
  log.info('R packages ready', { api: name, asked: spec.needs.length, installed: installedNames.length, library: library ?? 'none', checked: true, took_ms: Date.now() - started });
  return {
    library,
    report: {
      packages: spec.needs.map((n) => describe(n.name)).filter((p): p is InstalledRPackage => p !== undefined),
      installed: installedNames.map(describe).filter((p): p is InstalledRPackage => p !== undefined),
      warnings: [...rVersionWarning(spec, after.rVersion), ...plan.warnings],
      rVersion: after.rVersion,
      cached: false,
      tookMs: Date.now() - started,
    },
  };
}

/** A generation's name: a hash of the packages it holds (name, version, how it came), in order. */
function generationOf(content: Map<string, string>): string {
  const text = [...content].sort(([a], [b]) => (a < b ? -1 : 1)).map(([pkg, what]) => `${pkg} ${what}\n`).join('');
  return `g-${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
}

const exists = (file: string) => access(file).then(() => true, () => false);

/**
 * Deletes the API's library generations no kept release names, and what an install cut in the
 * middle left (staging, a generation half made); the packages of releases from before
 * generations go with the last such release.
 */
export async function pruneLibraries(name: string, releases: readonly Release[]): Promise<string[]> {
  const root = layout.libraryDir(name);
  const named = new Set(releases.map((r) => r.library));
  const removed: string[] = [];
  const leftovers = (await readdir(layout.apiDir(name)).catch(() => [] as string[])).filter((e) => e.startsWith(STAGING_PREFIX)).map((e) => path.join(layout.apiDir(name), e));
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    const generation = LibraryGeneration.safeParse(entry).success;
    if (generation ? named.has(entry) : entry.startsWith(BUILDING_PREFIX) ? false : named.has(undefined)) continue;
    leftovers.push(path.join(root, entry));
  }
  for (const dir of leftovers) {
    await rm(dir, { recursive: true, force: true });
    removed.push(`removed ${path.relative(layout.apisRoot, dir)}`);
  }
  return removed;
}

/** Lines worth showing while apt or R works: one per package, not every compiler line. */
const PROGRESS_LINE = /^(Get:\d+|Unpacking |Setting up |\* installing|\* DONE|trying URL|ERROR|plumb-missing)/;

async function aptStep(debs: string[], forWhat: string[], ctx: OpContext): Promise<void> {
  const show = (line: string) => PROGRESS_LINE.test(line) && ctx.progress(STEP.debian, line.slice(0, 200));
  ctx.progress(STEP.debian, debs.join(' '));
  let run = await aptInstall(debs, show);
  // Package lists older than the archive (a droplet up for weeks) make apt ask for files that are gone.
  if (run.exitCode !== 0 && run.lines.slice(-R_PACKAGES_FAILED_LOG_LINES).some((l) => /Failed to fetch|Unable to fetch|404/.test(l))) {
    ctx.progress(STEP.debian, 'apt-get update (the package lists were out of date)');
    await aptUpdate(() => {});
    run = await aptInstall(debs, show);
  }
  if (run.exitCode !== 0) {
    throw new StepError('R_PACKAGE_INSTALL_FAILED', STEP.debian, `apt-get could not install ${debs.join(', ')} (for ${forWhat.join(', ')})${run.timedOut ? ': it timed out' : ''}`, outputAbout(run.lines, undefined), 'the previous release is still serving; the output above says why');
  }
}

const STAGING_PREFIX = '.library-staging-';
const BUILDING_PREFIX = '.building-';

/**
 * install.packages into a staging directory next to the library; only when every package is
 * there is the new generation made: the base generation's packages linked (never copied: a
 * generation is never written once made), the new ones moved in, the whole renamed into place.
 * A failed build leaves every generation as it was.
 */
async function repoStep(name: string, items: RepoItem[], repos: Repos, base: { dir: string | null; manifest: Record<string, RPackageSource> }, generation: string, ctx: OpContext): Promise<void> {
  const root = layout.libraryDir(name);
  const staging = path.join(layout.apiDir(name), `${STAGING_PREFIX}${randomBytes(4).toString('hex')}`);
  const building = path.join(root, `${BUILDING_PREFIX}${randomBytes(4).toString('hex')}`);
  const step = items.some((i) => i.action === 'source') ? STEP.source : STEP.repository;
  await mkdir(root, { recursive: true, mode: 0o755 });
  await mkdir(path.join(staging, '.tmp'), { recursive: true, mode: 0o700 });
  try {
    ctx.progress(step, items.map((i) => `${i.name} ${i.version ?? ''}`.trim()).join(', '));
    const run: CommandRun = await rInstall(
      {
        staging,
        apiLibrary: base.dir ?? '/nonexistent',
        repos: [repos.binary, repos.source].filter((r): r is string => r !== null),
        current: items.filter((i) => !i.archiveUrl).map((i) => i.name),
        archived: items.flatMap((i) => (i.archiveUrl ? [i.archiveUrl] : [])),
        tmpDir: path.join(staging, '.tmp'),
      },
      (line) => PROGRESS_LINE.test(line) && ctx.progress(step, line.slice(0, 200)),
    );
    const missing = run.lines.flatMap((l) => /^plumb-missing: (\S+)/.exec(l)?.[1] ?? []);
    if (run.exitCode !== 0 || missing.length > 0) {
      const failed = missing.length > 0 ? missing : items.map((i) => i.name);
      const failedStep = items.find((i) => i.name === failed[0])?.action === 'repository' ? STEP.repository : STEP.source;
      throw new StepError('R_PACKAGE_INSTALL_FAILED', failedStep, `R package${failed.length > 1 ? 's' : ''} ${failed.join(', ')} could not be installed from ${items.find((i) => i.name === failed[0])?.from ?? repos.source}${run.timedOut ? ' (timed out)' : ''}`, outputAbout(run.lines, failed[0]), 'the previous release is still serving; nothing was added to the API\'s library');
    }
    const staged = (await readdir(staging)).filter((e) => !e.startsWith('.') && !e.startsWith('00LOCK'));
    await mkdir(building, { mode: 0o755 });
    // The base's packages (a release from before generations: the packages directly in library/).
    const inherited = base.dir === null ? [] : (await readdir(base.dir)).filter((e) => !e.startsWith('.') && !LibraryGeneration.safeParse(e).success && !staged.includes(e));
    if (base.dir !== null && inherited.length > 0) await linkTree(inherited.map((e) => path.join(base.dir!, e)), building);
    const manifest = Object.fromEntries(Object.entries(base.manifest).filter(([pkg]) => inherited.includes(pkg)));
    for (const entry of staged) {
      await rename(path.join(staging, entry), path.join(building, entry));
      manifest[entry] = items.find((i) => i.name === entry)?.action === 'repository' ? 'repository' : 'source';
    }
    await writeFileAtomic(manifestFile(building), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
    await chmod(building, 0o755);
    await rename(building, layout.libraryGeneration(name, generation));
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(building, { recursive: true, force: true });
  }
}

/** Which packages of the API's library came from a binary repository and which were built. */
const manifestFile = (apiLibrary: string) => path.join(apiLibrary, '.plumb-sources.json');

async function readManifest(apiLibrary: string): Promise<Record<string, RPackageSource>> {
  try {
    return JSON.parse(await readFile(manifestFile(apiLibrary), 'utf8')) as Record<string, RPackageSource>;
  } catch {
    return {};
  }
}

/** `plumb packages NAME`: the live release's packages as they are now on the droplet. */
export async function packagesOf(name: string, ctx: OpContext): Promise<PackagesResult> {
  const api = requireApi(ctx.state.get(), name);
  const release = liveRelease(api);
  if (!release) throw new PlumbError('NO_SUCH_RELEASE', `${name} has no live release`);
  const apiLibrary = liveLibrary(api) ?? '/nonexistent';
  const libraries = await inspectLibraries(apiLibrary);
  const manifest = await readManifest(apiLibrary);
  const names = [...new Set([...release.packages, ...[...libraries.installed].filter(([, c]) => c.library === apiLibrary).map(([n]) => n)])].sort();
  const packages = names.flatMap((pkg): InstalledRPackage[] => {
    const copy = libraries.installed.get(pkg);
    return copy ? [{ name: pkg, version: copy.version, source: sourceOf(copy.library, apiLibrary, manifest, pkg), library: copy.library }] : [];
  });
  return { name, release: api.current, packages };
}
