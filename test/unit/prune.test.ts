import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { apiLock, Locks, type OpContext } from '@plumb/agent/ops/context';
import { pruneAfterAnswer, releasesToPrune } from '@plumb/agent/ops/prune';
import { events } from '@plumb/agent/monitor/events';
import type { AgentState, ApiRecord, Release } from '@plumb/agent/state';

/** Which releases go after a deploy (ops/prune.ts), and when the prune runs: behind the answer, on the API's lock. */

const release = (n: number): Release => ({ id: `20261101T0000${String(n).padStart(2, '0')}Z-abcd`, createdAt: '', files: 1, bytes: 1, env: {}, packages: [] });
const ids = (rs: Release[]) => rs.map((r) => r.id);
const api = (count: number, keepReleases: number, current = count, draining: number[] = []) => {
  const releases = Array.from({ length: count }, (_, i) => release(i + 1));
  return { releases, keepReleases, current: release(current).id, draining: draining.map((n, i) => ({ port: 9000 + i, release: release(n).id, until: '' })) };
};

test('releasesToPrune: all but the newest --keep, oldest first; none when there are no more than that', () => {
  assert.deepEqual(ids(releasesToPrune(api(6, 5))), ids([release(1)]));
  assert.deepEqual(releasesToPrune(api(5, 5)), []);
  assert.deepEqual(releasesToPrune(api(1, 1)), []);
});

test('releasesToPrune: a prune that never ran (agent killed after the answer) is caught up by the next, every extra release at once', () => {
  assert.deepEqual(ids(releasesToPrune(api(8, 5))), ids([release(1), release(2), release(3)]));
  assert.deepEqual(ids(releasesToPrune(api(4, 1))), ids([release(1), release(2), release(3)]));
});

test('releasesToPrune: never the live release (a rollback made an old one live) nor one whose workers still drain', () => {
  assert.deepEqual(ids(releasesToPrune(api(7, 5, 1))), ids([release(2)]), 'release 1 is live after a rollback');
  assert.deepEqual(ids(releasesToPrune(api(3, 1, 3, [2]))), ids([release(1)]), 'release 2 drains');
  assert.deepEqual(releasesToPrune(api(2, 1, 1, [2])), [], 'rolled back to 1 while 2 drains');
});

/** A state store in memory; `update` can be made to fail as a full disk would. */
function memoryState(state: AgentState, failUpdate: Error | null) {
  const reads: string[] = [];
  return {
    reads,
    store: {
      get: () => {
        reads.push('get');
        return state;
      },
      update: async (fn: (s: AgentState) => AgentState) => {
        if (failUpdate) throw failUpdate;
        state = fn(state);
      },
    },
  };
}

test('pruneAfterAnswer: runs only once the deploy holding the API lock is done, reads the state as it is then, and a failure is a prune-failed event, not an error', async () => {
  const locks = new Locks();
  const record = { ...api(7, 5), name: 'pruned' } as unknown as ApiRecord;
  const { reads, store } = memoryState({ apis: { pruned: record } } as unknown as AgentState, new Error('ENOSPC: no space left on device'));
  const ctx = { state: store, locks, progress: () => {} } as unknown as OpContext;
  const before = events.lastId;
  let release!: () => void;
  const deploying = locks.with(apiLock('pruned'), () => {
    pruneAfterAnswer('pruned', ctx);
    return new Promise<void>((r) => (release = r));
  });
  await nextTurn();
  await nextTurn();
  assert.deepEqual(reads, [], 'the prune waits for the deploy that queued it');
  release();
  await deploying;
  // Another operation on the API waits for the prune: when it runs, the prune has ended.
  await locks.with(apiLock('pruned'), async () => {});
  assert.deepEqual(reads, ['get'], 'the prune read the state once the deploy was done');
  const recorded = events.after(before);
  assert.equal(recorded.length, 1, JSON.stringify(recorded));
  assert.equal(recorded[0]?.kind, 'prune-failed');
  assert.equal(recorded[0]?.api, 'pruned');
  assert.match(recorded[0]?.detail ?? '', /ENOSPC: no space left on device.*the next deploy of pruned tries again/);
});
