import { createRequire } from 'node:module';

/** This plumb's version: the agent version it installs and upgrades droplets to. Apart, so `plumb --help` loads it alone. */
export const PLUMB_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
