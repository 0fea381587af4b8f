import { firstWatch, startedWorkerWatch, type Observation, type WorkerWatch } from './policy.js';

/** What the event log last said of a worker (monitor.ts reads it): where an inherited worker's watch picks up. */
export interface Remembered {
  reported: 'up' | 'down' | null;
  agentRestarts: number[];
}

/**
 * The monitor's memory of workers between checks, keyed by API and port. A worker's first check
 * starts its watch one of two ways. One there when the agent started (in the state it loaded) was
 * started by an earlier agent: its unit's restarts so far are its baseline, and what the event
 * log last said of it is where it picks up. Any other this agent started itself, from 0 restarts
 * (startedWorkerWatch): restarts seen at its first check are news.
 */
export class WorkerWatches {
  private readonly watches = new Map<string, WorkerWatch>();
  private readonly inherited: Set<string>;

  constructor(atStart: Record<string, { name: string; workers: ReadonlyArray<{ port: number }> }>) {
    this.inherited = new Set(Object.values(atStart).flatMap((api) => api.workers.map((w) => key(api.name, w.port))));
  }

  /** The watch this check of the worker continues from; `remembered` is read only for an inherited worker's first check. */
  current(api: string, port: number, obs: Observation, now: number, remembered: () => Remembered): WorkerWatch {
    const k = key(api, port);
    const known = this.watches.get(k);
    if (known) return known;
    if (this.inherited.delete(k)) {
      const before = remembered();
      return firstWatch(obs, now, before.reported, before.agentRestarts);
    }
    return startedWorkerWatch(obs, now);
  }

  set(api: string, port: number, watch: WorkerWatch): void {
    this.watches.set(key(api, port), watch);
  }

  /** Forgets the workers `gone` names, watched or inherited (never looked at): a later worker on one of their ports is a new one. */
  forget(gone: (api: string, port: number) => boolean): void {
    for (const set of [this.watches, this.inherited]) {
      for (const k of [...set.keys()]) {
        const at = k.lastIndexOf('@');
        if (gone(k.slice(0, at), Number(k.slice(at + 1)))) set.delete(k);
      }
    }
  }
}

const key = (api: string, port: number) => `${api}@${port}`;
