import { InvalidArgumentError, Option, type Command, type OptionValues } from '@commander-js/extra-typings';
import { parseWholeNumber, type WholeNumberRange } from '@plumb/shared/core';

/**
 * Flags more than one command takes, made once here so that each reads the same everywhere.
 * Each call makes a new Option: commander keeps per-command state on them.
 */
const jsonFlag = () => new Option('--json', 'print the result (or the error) as JSON on stdout');
const quietFlag = () => new Option('-q, --quiet', 'no progress lines on stderr: only the result and errors');
/** `--quiet` and `--json`, last among the flags of every command that prints a result through cli/run.ts `output`. */
export const outputFlags = <Args extends unknown[], Opts extends OptionValues, GlobalOpts extends OptionValues>(command: Command<Args, Opts, GlobalOpts>) =>
  command.addOption(quietFlag()).addOption(jsonFlag());
export const dropletFlag = () => new Option('--droplet <name|id>', 'which droplet (needed when plumb knows several)');
export const yesFlag = () => new Option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)');
export const waitFlag = () => new Option('--wait', 'return only once the previous workers have finished their requests and stopped');
export const groupFlag = (what: string) => new Option('--group <group>', `every droplet of the group: ${what}`).conflicts('droplet');
export const allFlag = () => new Option('--all', 'every droplet plumb knows, one after another');
export const strictVersionsFlag = () => new Option('--strict-versions', "fail when a package's version differs from renv.lock's (or is below DESCRIPTION's minimum) instead of warning");
export const repoFlag = () => new Option('--repo <url>', 'CRAN-like repository for packages Debian does not ship (default: CRAN; remembered for the API)');
export const binaryRepoFlag = () => new Option('--binary-repo <url>', "CRAN-like repository of binaries built for the droplet's Debian, tried before source builds (remembered for the API)");

/** A commander parser for a whole number within a range (packages/shared ranges.ts); anything else is a usage error. */
export function wholeNumber(r: WholeNumberRange): (value: string) => number {
  return (value) => {
    try {
      return parseWholeNumber(value, r);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

/** A repeatable flag's values, in order. */
export const collect = (value: string, all: string[]) => [...all, value];
