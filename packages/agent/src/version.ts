import { createRequire } from 'node:module';

/** The agent's version: the controller installs exactly its own version on every droplet. */
export const AGENT_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
