import type { CommanderError, CommandUnknownOpts } from '@commander-js/extra-typings';
import { ValidationError } from '@plumb/shared/core';

/** The (sub)command words at the start of `argv` that name commands of `program`: `['keys', 'add']`. */
export function commandPath(program: CommandUnknownOpts, argv: string[]): string[] {
  const path: string[] = [];
  let at = program;
  for (const word of argv.filter((a) => !a.startsWith('-'))) {
    const next = at.commands.find((c) => c.name() === word);
    if (!next) break;
    path.push(word);
    at = next;
  }
  return path;
}

/**
 * commander's parse error as plumb's usage error: one line saying what was wrong (an unknown
 * flag, a missing argument, "many" where a number goes) and where to read the usage.
 */
export function usageError(err: CommanderError, program: CommandUnknownOpts, argv: string[]): ValidationError {
  const message = (err.message.split('\n')[0] ?? err.message)
    .replace(/^error: /, '')
    // Said as plumb's own checks say it (`invalid WHAT "VALUE": RULE`).
    .replace(/^option '(-\S+ )?(--[\w-]+)[^']*' argument '(.*)' is invalid\. /, 'invalid $2 "$3": ')
    .replace(/^command-argument value '(.*)' is invalid for argument '([\w-]+)'\. /, 'invalid $2 "$1": ');
  const command = ['plumb', ...commandPath(program, argv)].join(' ');
  // A value that starts with "-" (a key id is base64url, so 1 in 32 do) reads as a flag; `--` ends the flags.
  const dashed = err.code === 'commander.unknownOption' ? /^unknown option '(-[^-'][^']+)'/.exec(message)?.[1] : undefined;
  if (dashed) return new ValidationError(message, `if ${dashed} is a value, not a flag, put it after \`--\`: \`${command} [flags] -- ${dashed}\``);
  return new ValidationError(message, `see \`${command} --help\``);
}
