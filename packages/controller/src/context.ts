import { configDir } from './local/config.js';
import { DropletStore, type Chooser } from './local/droplets-state.js';

/** A step of a long command, as it happens; the CLI decides how to show it. */
export type Progress = (event: { step: string; detail?: string; done?: boolean }) => void;

/** What every command gets: its environment, where its files are, and where progress goes. */
export interface Context {
  env: NodeJS.ProcessEnv;
  configDir: string;
  droplets: DropletStore;
  progress: Progress;
}

/** `choose`: how to pick one of several droplets when none was named (none: the command stops). */
export function defaultContext(progress: Progress, env: NodeJS.ProcessEnv = process.env, choose?: Chooser): Context {
  const dir = configDir(env);
  return { env, configDir: dir, droplets: new DropletStore(`${dir}/droplets.json`, choose), progress };
}

/** The agent's progress messages (step, detail) as the command's progress. */
export const agentProgress =
  (ctx: Context) =>
  (step: string, detail?: string): void =>
    ctx.progress({ step, ...(detail ? { detail } : {}) });
