import type { StateStore } from '../state.js';
import { PlumbError, type ErrorCode } from '@plumb/shared';

/** What an operation gets: the state it changes and where its progress goes. */
export interface OpContext {
  state: StateStore;
  progress: (step: string, detail?: string) => void;
  locks: Locks;
}

/** A failed step of an operation, with the log lines that explain it (sent to the CLI). */
export class StepError extends PlumbError {
  override name = 'StepError';
  constructor(
    code: ErrorCode,
    readonly step: string,
    message: string,
    readonly log: string[] = [],
    hint?: string,
  ) {
    super(code, message, hint);
  }
}

/**
 * Serializes work: one operation per API at a time (a second deploy of the same API waits),
 * and one change of the shared state and nginx at a time across all APIs.
 */
export class Locks {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `work` once every earlier holder of `key` has finished; `onWait` is told if it must wait. */
  async with<T>(key: string, work: () => Promise<T>, onWait?: () => void): Promise<T> {
    const before = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = (before ?? Promise.resolve()).then(() => mine);
    this.tails.set(key, tail);
    if (before) {
      onWait?.();
      await before;
    }
    try {
      return await work();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export const SHARED = 'shared-state';
/** ufw is one set of files: every change to it (firewall, https) one at a time. */
export const UFW_LOCK = 'ufw';
/** /var/lib/plumb/package-checks.json: one read-modify-write at a time (packages.ts). */
export const PACKAGE_CHECKS_LOCK = 'package-checks';
export const apiLock = (name: string) => `api:${name}`;
