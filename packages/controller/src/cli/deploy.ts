import { statSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from '@commander-js/extra-typings';
import type { PackagesReport } from '@plumb/shared';
import { DRAIN_TIMEOUT_SECONDS, EXIT, GROUP_PARALLEL, HEALTH_TIMEOUT_SECONDS, KEEP_RELEASES, ValidationError, WORKER_COUNT } from '@plumb/shared/core';
import { binaryRepoFlag, collect, dropletFlag, outputFlags, repoFlag, strictVersionsFlag, waitFlag, wholeNumber } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';
import { drainText, seconds } from '../output/format.js';
import type { DeployOutcome } from '../commands/deploy.js';
import type { GroupDeployResult } from '../commands/group.js';

/** A deploy's R packages in two lines or so: what it installed, what was there, warnings. */
function packagesLines(p: PackagesReport): string[] {
  const list = (xs: { name: string; version: string; source: string }[]) => xs.map((x) => `${x.name} ${x.version} (${x.source})`).join(', ');
  return [
    p.cached
      ? `  R packages: ${p.packages.length} used, unchanged since the last deploy (not checked again; R ${p.rVersion})`
      : `  R packages: ${p.packages.length} used, ${p.installed.length === 0 ? 'nothing installed' : `installed ${list(p.installed)}`} in ${seconds(p.tookMs)} (R ${p.rVersion})`,
    ...p.warnings.map((w) => `  warning: ${w}`),
  ];
}

export async function text(r: DeployOutcome | GroupDeployResult): Promise<string> {
  if ('group' in r) return (await import('../commands/group.js')).groupText(r, 'deployed');
  return [
    `deployed ${r.name} release ${r.release} to ${r.droplet} in ${seconds(r.tookMs)} (${r.files} files, ${(r.bundleBytes / 1024).toFixed(0)} KiB${r.upload.mode === 'delta' ? ` sent: ${r.upload.files} of ${r.upload.totalFiles} files, the others were on the droplet` : ''})`,
    `  ${r.url}`,
    ...(r.forward ? [`  also at ${r.url.replace(r.path + '/', '/')}`] : []),
    ...drainText(r.drain),
    ...(r.packages ? packagesLines(r.packages) : ['  R packages: not checked (--no-deps)']),
  ].join('\n');
}

const SPARE_WHEN = ['always', 'auto', 'never'] as const;
type SpareWhen = (typeof SPARE_WHEN)[number];

/**
 * --spare [when] and --no-spare as given: the last WHEN (--spare alone: always; --no-spare: never)
 * and, when a bare --spare took DIR as its WHEN, that DIR.
 */
export interface SpareFlag {
  when: SpareWhen;
  dir?: string;
}

/** commander's `.choices()` wording, which cli/usage.ts turns into `invalid --spare "WORD": ...`. */
const SPARE_CHOICES = `Allowed choices are ${SPARE_WHEN.join(', ')}.`;

/**
 * --spare's value. commander reads the word after a bare --spare as its WHEN (an optional option
 * value takes the next word that is not a flag), so `plumb deploy --spare ./api` would lose DIR:
 * a word that is no WHEN but a directory is DIR after a bare --spare (as if written before it).
 * Else the usual one-line refusal with the choices.
 */
function parseSpareWhen(word: string, previous: SpareFlag | undefined): SpareFlag {
  if ((SPARE_WHEN as readonly string[]).includes(word)) return { ...previous, when: word as SpareWhen };
  if (previous?.dir === undefined && statSync(word, { throwIfNoEntry: false })?.isDirectory()) return { when: 'always', dir: word };
  throw new InvalidArgumentError(SPARE_CHOICES);
}

/**
 * DIR and DeployOptions.spare from the command line: true (--spare, --spare always), false
 * (--no-spare, --spare never), 'auto'; left out: as it was. A DIR given after a bare --spare that
 * took one already is two: the first was meant as WHEN then.
 */
export function dirAndSpare(dir: string, dirGiven: boolean, given: SpareFlag | false | undefined): { dir: string; spare?: boolean | 'auto' } {
  // commander's types give --no-spare's value as false whatever its parser returns.
  const flag: SpareFlag | undefined = given === false ? { when: 'never' } : given;
  if (flag?.dir !== undefined && dirGiven) throw new ValidationError(`invalid --spare "${flag.dir}": ${SPARE_CHOICES}`, 'see `plumb deploy --help`');
  const spare = flag === undefined ? {} : { spare: flag.when === 'always' ? true : flag.when === 'never' ? false : flag.when };
  return { dir: flag?.dir ?? dir, ...spare };
}

export function register(program: Command) {
  const command = outputFlags(program
    .command('deploy')
    .argument('[dir]', 'the directory holding plumber.R (or entrypoint.R)', '.')
    .description('deploy (or update) the plumber API in DIR; prints its URL. DIR/plumb.toml (plumb init) gives defaults for the flags')
    .option('--name <name>', 'API name: lower-case letters, digits, "-", "_" (or name in plumb.toml)')
    .option('--path <path>', 'URL path it is served under (default: /NAME)')
    .option('--forward', 'also serve it at / (as plumber::do_forward)')
    .option('--env <KEY=VALUE>', 'an environment variable for the API (repeatable; kept out of world-readable files)', collect, [] as string[])
    .option('--workers <n>', 'R processes behind nginx (default 1)', wholeNumber(WORKER_COUNT))
    .option('--health-path <path>', 'a path that must answer 2xx before traffic switches (default: any answer below 500 at /)')
    .option('--health-timeout <seconds>', 'how long the new release may take to answer (default 120)', wholeNumber(HEALTH_TIMEOUT_SECONDS))
    .option('--memory <size>', 'memory limit per R worker (systemd MemoryMax), e.g. 512M')
    .option('--keep <n>', 'releases kept on the droplet for rollback (default 5)', wholeNumber(KEEP_RELEASES))
    .option('--drain-timeout <seconds>', 'how long the previous workers may finish requests in flight before they are stopped (default 30; kept for the API)', wholeNumber(DRAIN_TIMEOUT_SECONDS))
    .addOption(new Option('--spare [when]', 'a warm spare: an R process with plumber loaded that the next deploy uses (about 2x faster; costs its RAM). always (--spare alone), never, or auto: where memory allows and it pays (the default; kept for the API)').choices(SPARE_WHEN).preset('always').argParser(parseSpareWhen))
    .addOption(new Option('--no-spare', 'keep no warm spare for the API (as --spare never)').argParser((_: string, previous: SpareFlag | undefined): SpareFlag => ({ ...previous, when: 'never' })))
    .addOption(waitFlag())
    .option('--no-deps', 'do not look for or install the R packages the API uses')
    .option('--full', 'send every file, not only those the droplet lacks')
    .addOption(strictVersionsFlag())
    .addOption(repoFlag())
    .addOption(binaryRepoFlag())
    .addOption(dropletFlag())
    .option('--group <group>', 'every droplet of the group, one at a time (see docs/scale-out.md)')
    .option('--parallel <n>', 'with --group: this many droplets at a time (default 1)', wholeNumber(GROUP_PARALLEL))
    .option('--skip-unreachable', 'with --group: deploy to the droplets that answer, leaving out one that cannot be asked (else nothing is deployed)'))
    .action((dirArg, { healthTimeout, drainTimeout, json, quiet, group, parallel, skipUnreachable, spare, ...o }, command) =>
      output(
        { json, quiet },
        async (ctx): Promise<DeployOutcome | GroupDeployResult> => {
          const groupOnly = [parallel === undefined ? '' : '--parallel', skipUnreachable ? '--skip-unreachable' : ''].filter(Boolean);
          if (group === undefined && groupOnly.length > 0) throw new ValidationError(`${groupOnly.join(' and ')} ${groupOnly.length > 1 ? 'go' : 'goes'} with --group only`, 'add --group GROUP to deploy to every droplet of a group, or leave it out');
          const { dir, ...spareOption } = dirAndSpare(dirArg, command.args.length > 0, spare);
          const { deployOptionsWith, readPlumbToml } = await import('../api-dir/plumb-toml.js');
          const opts = deployOptionsWith(await readPlumbToml(dir), { dir, ...o, ...spareOption, healthTimeoutSeconds: healthTimeout, drainTimeoutSeconds: drainTimeout });
          if (group !== undefined) return (await import('../commands/group.js')).deployGroup({ ...opts, group, skipUnreachable: skipUnreachable === true, ...(parallel === undefined ? {} : { parallel }) }, ctx);
          return (await import('../commands/deploy.js')).deploy(opts, ctx);
        },
        text,
        (r) => ('group' in r && !r.ok ? EXIT.failure : EXIT.ok),
      ),
    );
  helpFooter(command, ['plumb deploy ./my-api --name hello', 'plumb init && plumb deploy', 'plumb deploy . --name sum --workers 2 --env MODE=prod --forward --droplet api-1', 'plumb deploy ./my-api --name hello --group web --parallel 2']);
}
