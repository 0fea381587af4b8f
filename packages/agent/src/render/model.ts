import type { z } from 'zod';
import { PlumbError } from '@plumb/shared';

/**
 * What the renderers are given. The agent builds it from its state, whose names and paths
 * passed the shared rules on the way in; the renderers check them again, because a name that
 * slipped through would become a broken (or hostile) nginx or systemd file.
 */

/** One R worker: the unit `plumber-NAME@PORT`. */
export interface ApiInstance {
  port: number;
}

/** An API as nginx serves it: `instances` are the live workers traffic goes to. */
export interface RenderedApi {
  name: string;
  path: string;
  instances: ApiInstance[];
}

export interface NginxModel {
  apis: RenderedApi[];
  /** The name of the API served at `/`, or null. */
  forward: string | null;
  /** HTTPS comes later. */
  https?: never;
}

/**
 * A renderer was handed something the rules refuse. Bad user input is refused before it reaches
 * state, so this is a bug in the agent; nothing is written.
 */
export function renderRefused(message: string): PlumbError {
  return new PlumbError('RENDER_REFUSED', `refusing to render ${message}`, 'nothing was changed; this is a bug in plumb-agent, please report it');
}

/** `value` if the shared rule accepts it; otherwise the renderer stops. */
export function checked(rule: z.ZodType<string>, value: string, what: string): string {
  const result = rule.safeParse(value);
  if (!result.success) throw renderRefused(`${what} ${JSON.stringify(value)}: ${result.error.issues[0]?.message ?? 'invalid'}`);
  return value;
}
