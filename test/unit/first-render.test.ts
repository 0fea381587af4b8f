import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIRST_RENDER_POLL_MS, FIRST_RENDER_STALE_PID_MS, FIRST_RENDER_WAIT_MS, MONITOR_INTERVAL_MS } from '@plumb/shared';
import { waitForNginxStart, type NginxStartProbes } from '@plumb/agent/ops/routing';

/** renderWhenNginxStarts' schedule on a fake clock: what it takes the shared lock for, and how often. */
function droplet(opts: { pidFileFrom: number; activeFrom: number }) {
  let clock = 0;
  const calls = { locked: 0, sleeps: [] as number[] };
  let rendered = false;
  const probes: NginxStartProbes = {
    pidFile: async () => clock >= opts.pidFileFrom,
    rendered: async () => rendered,
    renderIfStarted: async () => {
      calls.locked++;
      rendered = clock >= opts.activeFrom;
      return rendered;
    },
    clock: {
      now: () => clock,
      sleep: async (ms) => {
        calls.sleeps.push(ms);
        clock += ms;
      },
    },
  };
  return { probes, calls, at: () => clock };
}

test('a stale nginx pid file with nginx never active: once it is stale, the shared lock and systemctl only once a monitor tick, for the whole hour', async () => {
  const { probes, calls } = droplet({ pidFileFrom: 0, activeFrom: Infinity });
  assert.equal(await waitForNginxStart(probes, () => false), 'gave up');
  const grace = FIRST_RENDER_STALE_PID_MS / FIRST_RENDER_POLL_MS + 1;
  assert.ok(calls.locked <= grace + FIRST_RENDER_WAIT_MS / MONITOR_INTERVAL_MS + 1, `took the shared lock ${calls.locked} times in an hour`);
  // Fast looks while the file is new, then one a tick; the last pause is cut short at the deadline.
  assert.deepEqual(new Set(calls.sleeps.slice(0, -1)), new Set([FIRST_RENDER_POLL_MS, MONITOR_INTERVAL_MS]));
  assert.ok(calls.sleeps.filter((ms) => ms === FIRST_RENDER_POLL_MS).length <= grace);
});

test('a fresh droplet: a stat every FIRST_RENDER_POLL_MS until nginx writes its pid file, then rendered at once, under the lock once', async () => {
  const { probes, calls, at } = droplet({ pidFileFrom: 30_000, activeFrom: 30_000 });
  assert.equal(await waitForNginxStart(probes, () => false), 'rendered');
  assert.equal(at(), 30_000, 'rendered on the first look after the pid file appeared');
  assert.equal(calls.locked, 1);
  assert.deepEqual(new Set(calls.sleeps), new Set([FIRST_RENDER_POLL_MS]));
});

test('a pid file written a little before systemd calls nginx active: rendered on the next fast look, not a monitor tick later', async () => {
  const { probes, at } = droplet({ pidFileFrom: 1_000, activeFrom: 1_100 });
  assert.equal(await waitForNginxStart(probes, () => false), 'rendered');
  assert.ok(at() <= 1_100 + FIRST_RENDER_POLL_MS, `rendered at ${at()} ms`);
});
