import { readFile } from 'node:fs/promises';
import { AgentConfig, PlumbError } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';

export async function readConfig(file: string): Promise<AgentConfig> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new PlumbError('AGENT_CONFIG', `cannot read the agent's config ${file}: ${err.code ?? err.message}`);
  });
  const parsed = AgentConfig.safeParse(JSON.parse(text));
  if (!parsed.success) throw new PlumbError('AGENT_CONFIG', `the agent's config ${file} is invalid: ${parsed.error.issues[0]?.message ?? 'unknown'}`);
  return parsed.data;
}

/** The agent's config as it is now: changed (enrolment, controller keys) whole and atomically. */
export class ConfigStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly file: string,
    private config: AgentConfig,
  ) {}

  get(): AgentConfig {
    return this.config;
  }

  /** Applies `change` after earlier changes, writes the result, and only then makes it the config. */
  update(change: (config: AgentConfig) => AgentConfig): Promise<AgentConfig> {
    const next = this.queue.then(async () => {
      const changed = AgentConfig.parse(change(this.config));
      await writeFileAtomic(this.file, `${JSON.stringify(changed, null, 2)}\n`);
      this.config = changed;
      return changed;
    });
    this.queue = next.catch(() => undefined);
    return next;
  }
}

/** Burns the enrolment secret: rewrites the config without it. */
export function forgetEnrolmentSecret(store: ConfigStore): Promise<AgentConfig> {
  return store.update(({ enrolmentSecret: _burned, ...rest }) => rest);
}
