import { readFile } from 'node:fs/promises';
import { AgentConfig, PlumbError } from '@plumb/shared';
import { writeFileAtomic } from './atomic-file.js';

export async function readConfig(file: string): Promise<AgentConfig> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new PlumbError('AGENT_CONFIG', `cannot read the agent's config ${file}: ${err.code ?? err.message}`);
  });
  const parsed = AgentConfig.safeParse(JSON.parse(text));
  if (!parsed.success) throw new PlumbError('AGENT_CONFIG', `the agent's config ${file} is invalid: ${parsed.error.issues[0]?.message ?? 'unknown'}`);
  return parsed.data;
}

/** Burns the enrolment secret: rewrites the config without it. */
export async function forgetEnrolmentSecret(file: string, config: AgentConfig): Promise<AgentConfig> {
  const { enrolmentSecret: _burned, ...rest } = config;
  await writeFileAtomic(file, `${JSON.stringify(rest, null, 2)}\n`);
  return rest;
}
