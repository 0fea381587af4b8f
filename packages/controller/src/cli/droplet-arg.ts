import { ValidationError } from '@plumb/shared/core';

/**
 * The droplet a command names, as a positional (`plumb status api-1`) or as --droplet, which
 * every command acting on one droplet takes. `required`: what to call it when one must be named.
 */
export function dropletNamed(positional: string | undefined, flag: string | undefined, opts: { required?: string } = {}): string | undefined {
  if (positional !== undefined && flag !== undefined && positional !== flag) throw new ValidationError(`two droplets named: "${positional}" and --droplet "${flag}"`, 'name it once');
  const which = positional ?? flag;
  if (which === undefined && opts.required) throw new ValidationError(`name ${opts.required}`, 'give its name or id, or --droplet NAME');
  return which;
}
