import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  BASE_R_PACKAGES,
  compareRVersions,
  DEFAULT_CRAN_URL,
  PlumbError,
  R_PACKAGES_FAILED_LOG_LINES,
  type InstalledRPackage,
  type PackagePlanItem,
  type PackagesPlan,
  type PackagesReport,
  type PackagesResult,
  type PackagesSpec,
  type ReposResult,
  type RPackageNeed,
  type RPackageSource,
} from '@plumb/shared';
import { writeFileAtomic } from '../atomic-file.js';
import { log } from '../log.js';
import { layout } from '../system/layout.js';
import { aptInstall, aptUpdate, debianCandidates, hasCompiler, inspectLibraries, outputAbout, readRepoIndex, rInstall, upstreamVersion, type CommandRun, type DebianCandidate, type InstalledCopy, type RepoPackage, type RLibraries } from '../system/r-packages.js';
import type { AgentState } from '../state.js';
import { SHARED, StepError, type OpContext } from './context.js';
import { requireApi } from './routing.js';

/**
 * An API's R packages (docs/r-packages.md): what is there already costs nothing; the rest comes
 * from Debian's archive (apt, R's system library), else a binary repository, else a source build
 * (both into the API's own library). Repository and source installs are built in a staging
 * directory and moved into the library only once all of them succeeded.
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
  const apiLibrary = name === null ? '/nonexistent' : layout.libraryDir(name);
  const libraries = await inspectLibraries(apiLibrary);
  const repos = reposFor({ repo: spec.repo ?? api?.repo ?? null, binaryRepo: spec.binaryRepo ?? api?.binaryRepo ?? null }, ctx.state.get());
  const plan = await planPackages(spec.needs, libraries, apiLibrary, repos, realLookups, spec.strictVersions);
  return { items: plan.items.map(({ archiveUrl: _url, needsCompilation: _compiled, ...item }) => item), warnings: [...rVersionWarning(spec, libraries.rVersion), ...plan.warnings, ...plan.errors], rVersion: libraries.rVersion };
}

const STEP = { debian: 'installing R packages (apt)', repository: 'installing R packages (repository)', source: 'installing R packages (source build)' } as const;

/**
 * Makes the API's packages present before its new release starts. Throws a StepError naming the
 * package and the step (apt / repository / source build) with the last lines of its output.
 */
export async function installPackages(name: string, spec: PackagesSpec, repos: Repos, ctx: OpContext): Promise<PackagesReport> {
  const started = Date.now();
  const apiLibrary = layout.libraryDir(name);
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
  if (fromRepo.length > 0) {
    if (fromRepo.some((i) => i.action === 'source' && i.needsCompilation) && !(await hasCompiler())) await aptStep(['r-base-dev'], ['the compilers for source builds'], ctx);
    await repoStep(name, fromRepo, repos, manifest, ctx);
  }

  const after = debs.length + fromRepo.length > 0 ? await inspectLibraries(apiLibrary) : before;
  const describe = (pkg: string): InstalledRPackage | undefined => {
    const copy = after.installed.get(pkg);
    return copy && { name: pkg, version: copy.version, source: sourceOf(copy.library, apiLibrary, manifest, pkg), library: copy.library };
  };
  const installedNames = [...debs, ...fromRepo].map((i) => i.name);
  log.info('R packages ready', { api: name, asked: spec.needs.length, installed: installedNames.length, took_ms: Date.now() - started });
  return {
    packages: spec.needs.map((n) => describe(n.name)).filter((p): p is InstalledRPackage => p !== undefined),
    installed: installedNames.map(describe).filter((p): p is InstalledRPackage => p !== undefined),
    warnings: [...rVersionWarning(spec, after.rVersion), ...plan.warnings],
    rVersion: after.rVersion,
    tookMs: Date.now() - started,
  };
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

/**
 * install.packages into a staging directory next to the library; only when every package is
 * there does each move into the library (a rename per package), so a failed build leaves the
 * library as it was.
 */
async function repoStep(name: string, items: RepoItem[], repos: Repos, manifest: Record<string, RPackageSource>, ctx: OpContext): Promise<void> {
  const apiLibrary = layout.libraryDir(name);
  const staging = path.join(layout.apiDir(name), `.library-staging-${randomBytes(4).toString('hex')}`);
  const step = items.some((i) => i.action === 'source') ? STEP.source : STEP.repository;
  await mkdir(apiLibrary, { recursive: true, mode: 0o755 });
  await mkdir(path.join(staging, '.tmp'), { recursive: true, mode: 0o700 });
  try {
    ctx.progress(step, items.map((i) => `${i.name} ${i.version ?? ''}`.trim()).join(', '));
    const run: CommandRun = await rInstall(
      {
        staging,
        apiLibrary,
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
    for (const entry of await readdir(staging)) {
      if (entry.startsWith('.') || entry.startsWith('00LOCK')) continue;
      const target = path.join(apiLibrary, entry);
      const old = path.join(apiLibrary, `.old-${entry}-${randomBytes(3).toString('hex')}`);
      await rename(target, old).catch(() => {});
      await rename(path.join(staging, entry), target);
      await rm(old, { recursive: true, force: true });
      const item = items.find((i) => i.name === entry);
      manifest[entry] = item?.action === 'repository' ? 'repository' : 'source';
    }
    await writeFileAtomic(manifestFile(apiLibrary), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
    await chmod(apiLibrary, 0o755);
  } finally {
    await rm(staging, { recursive: true, force: true });
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
  const release = api.releases.find((r) => r.id === api.current);
  if (!release) throw new PlumbError('NO_SUCH_RELEASE', `${name} has no live release`);
  const apiLibrary = layout.libraryDir(name);
  const libraries = await inspectLibraries(apiLibrary);
  const manifest = await readManifest(apiLibrary);
  const names = [...new Set([...release.packages, ...[...libraries.installed].filter(([, c]) => c.library === apiLibrary).map(([n]) => n)])].sort();
  const packages = names.flatMap((pkg): InstalledRPackage[] => {
    const copy = libraries.installed.get(pkg);
    return copy ? [{ name: pkg, version: copy.version, source: sourceOf(copy.library, apiLibrary, manifest, pkg), library: copy.library }] : [];
  });
  return { name, release: api.current, packages };
}
