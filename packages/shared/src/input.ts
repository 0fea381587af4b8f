import type { z } from 'zod';
import { ValidationError } from './errors.js';

/**
 * Checks one value from the user against a shared rule; refused, it is a one-line
 * ValidationError naming what was wrong: `invalid WHAT "VALUE": RULE'S MESSAGE`.
 */
export function checkInput<T>(rule: z.ZodType<T>, value: unknown, what: string, hint?: string): T {
  const result = rule.safeParse(value);
  if (!result.success) throw new ValidationError(`invalid ${what} "${String(value)}": ${result.error.issues[0]?.message ?? 'not accepted'}`, hint);
  return result.data;
}
