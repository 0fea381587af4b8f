import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from './atomic-file.js';

/**
 * The agent's state (`/var/lib/plumb/state.json`): the truth it rebuilds everything from.
 * Written whole and atomically; read once at start.
 */
export const AgentState = z.object({
  version: z.literal(1),
  /** Set once, when a controller enrolled this agent; a second enrolment is refused. */
  enrolledAt: z.string().nullable(),
});
export type AgentState = z.infer<typeof AgentState>;

const EMPTY: AgentState = { version: 1, enrolledAt: null };

export class StateStore {
  private constructor(
    private readonly file: string,
    private current: AgentState,
  ) {}

  static async open(stateDir: string): Promise<StateStore> {
    const file = path.join(stateDir, 'state.json');
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    return new StateStore(file, text === undefined ? EMPTY : AgentState.parse(JSON.parse(text)));
  }

  get(): AgentState {
    return this.current;
  }

  async update(change: (state: AgentState) => AgentState): Promise<AgentState> {
    const next = AgentState.parse(change(this.current));
    await writeFileAtomic(this.file, `${JSON.stringify(next, null, 2)}\n`);
    this.current = next;
    return next;
  }
}
