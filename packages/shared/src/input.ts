import type { z } from 'zod';
import { ValidationError } from './errors.js';
import { EnvValue } from './names.js';

/**
 * Checks one value from the user against a shared rule; refused, it is a one-line
 * ValidationError naming what was wrong: `invalid WHAT "VALUE": RULE'S MESSAGE`.
 */
export function checkInput<T>(rule: z.ZodType<T>, value: unknown, what: string, hint?: string): T {
  const result = rule.safeParse(value);
  if (!result.success) throw new ValidationError(`invalid ${what} "${String(value)}": ${result.error.issues[0]?.message ?? 'not accepted'}`, hint);
  return result.data;
}

/**
 * An environment value (--env, plumb secrets). Values may be secrets: unlike other input, a
 * refused one is never repeated in the message, only the variable's name.
 */
export function checkEnvValue(value: string, what: string): string {
  const problem = EnvValue.safeParse(value).error?.issues[0]?.message;
  if (problem !== undefined) throw new ValidationError(`invalid ${what} value: ${problem}`, 'an environment value is one line: put multi-line text in a file the API reads');
  return value;
}
