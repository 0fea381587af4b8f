import { ApiName, checkInput, DEFAULT_CRAN_URL, HttpUrl, type PackagesPlan, type PackagesResult, type ReposResult, type RPackageNeed } from '@plumb/shared';
import { inspectApiDir } from '../api-dir/bundle.js';
import { agentProgress, type Context } from '../context.js';
import { withAgent } from '../agent/connect.js';
import { describeNeed, type DetectedDependencies } from '../api-dir/r-deps.js';
import { dependenciesOf, packagesSpec } from './deploy.js';

export interface DepsOptions {
  dir: string;
  /** The API it would be deployed as: its own library counts as installed. */
  name?: string;
  droplet?: string;
  strictVersions?: boolean;
  repo?: string;
  binaryRepo?: string;
  /** Only what the directory says; no droplet is asked. */
  local?: boolean;
}

export interface DepsResult {
  source: DetectedDependencies['source'];
  needs: RPackageNeed[];
  notes: string[];
  /** What the droplet would do for each package; null with --local. */
  droplet: string | null;
  plan: PackagesPlan | null;
}

/** `plumb deps DIR`: the packages the API needs and, asked of the droplet, how each would get there. */
export async function deps(opts: DepsOptions, ctx: Context): Promise<DepsResult> {
  const name = opts.name === undefined ? null : checkInput(ApiName, opts.name, 'API name');
  const info = await inspectApiDir(opts.dir);
  const detected = await dependenciesOf(opts.dir, info.files);
  const spec = packagesSpec(detected, opts);
  const base = { source: detected.source, needs: detected.needs, notes: detected.notes };
  if (opts.local) return { ...base, droplet: null, plan: null };
  // Before any droplet exists, what the directory says is still worth showing.
  if (opts.droplet === undefined && (await ctx.droplets.list()).length === 0) return { ...base, notes: [...base.notes, 'plumb knows no droplet yet: how each package would be installed is decided there'], droplet: null, plan: null };
  return withAgent(ctx, opts.droplet, async ({ droplet, connection }) => {
    const plan = await connection.request<PackagesPlan>({ type: 'packages-plan', name, packages: spec }, { onProgress: agentProgress(ctx) });
    return { ...base, droplet: droplet.name, plan };
  });
}

const HOW: Record<PackagesPlan['items'][number]['action'], string> = {
  present: 'installed',
  debian: 'apt (Debian)',
  repository: 'binary repository',
  source: 'source build',
  missing: 'NOT FOUND',
};

export function depsText(r: DepsResult): string {
  const from = r.source === 'code' ? 'the code (library(), require(), pkg::fn, plumber features)' : r.source;
  const lines = [`R packages from ${from}: ${r.needs.length === 0 ? 'none beyond plumber' : r.needs.map(describeNeed).join(', ')}`];
  if (r.plan) {
    lines.push(`on ${r.droplet} (R ${r.plan.rVersion}):`);
    const width = Math.max(0, ...r.plan.items.map((i) => i.name.length));
    for (const item of r.plan.items) {
      lines.push(`  ${item.name.padEnd(width)}  ${HOW[item.action].padEnd(17)}  ${(item.version ?? '').padEnd(10)}  ${item.from}${item.dependency ? `  (${item.reason})` : ''}`);
    }
  }
  for (const note of [...r.notes, ...(r.plan?.warnings ?? [])]) lines.push(`  warning: ${note}`);
  return lines.join('\n');
}

/** `plumb packages NAME`: the live release's packages, with version and where each came from. */
export async function packages(name: string, opts: { droplet?: string }, ctx: Context): Promise<PackagesResult> {
  const checked = checkInput(ApiName, name, 'API name');
  return withAgent(ctx, opts.droplet, ({ connection }) => connection.request<PackagesResult>({ type: 'packages', name: checked }));
}

export function packagesText(r: PackagesResult): string {
  if (r.packages.length === 0) return `${r.name} (release ${r.release}) uses no R package beyond R and plumber`;
  const width = Math.max(...r.packages.map((p) => p.name.length));
  return [`${r.name} (release ${r.release}):`, ...r.packages.map((p) => `  ${p.name.padEnd(width)}  ${p.version.padEnd(10)}  ${p.source.padEnd(10)}  ${p.library}`)].join('\n');
}

export interface ReposOptions {
  droplet?: string;
  repo?: string;
  binaryRepo?: string;
  /** Back to CRAN and no binary repository. */
  reset?: boolean;
}

/** `plumb repos`: the droplet's default repositories for APIs deployed without --repo / --binary-repo. */
export async function repos(opts: ReposOptions, ctx: Context): Promise<ReposResult & { droplet: string }> {
  const change: { repo?: string | null; binaryRepo?: string | null } = opts.reset ? { repo: null, binaryRepo: null } : {};
  if (opts.repo !== undefined) change.repo = checkInput(HttpUrl, opts.repo, '--repo');
  if (opts.binaryRepo !== undefined) change.binaryRepo = checkInput(HttpUrl, opts.binaryRepo, '--binary-repo');
  return withAgent(ctx, opts.droplet, async ({ droplet, connection }) => ({ ...(await connection.request<ReposResult>({ type: 'repos', ...change })), droplet: droplet.name }));
}

export const reposText = (r: ReposResult & { droplet: string }) =>
  [`R package repositories on ${r.droplet} (for APIs deployed without --repo / --binary-repo):`, `  source builds from ${r.repo ?? `${DEFAULT_CRAN_URL} (CRAN, the default)`}`, `  binaries from ${r.binaryRepo ?? 'no binary repository (Debian packages, then source builds)'}`].join('\n');
