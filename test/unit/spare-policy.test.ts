import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiStatus, DeployRequest, requestedSparePolicy, SPARE_EXPECTED_BYTES, SPARE_HANDOVER_FLOOR_MS, SPARE_RESERVE_MIN_BYTES } from '@plumb/shared';
import { sparePolicyOf } from '@plumb/agent/state';
import { spareWhyOf } from '@plumb/agent/ops/status';
import { keepSpare, measuredOf, noSpare, rolloutTook, spareUndecided, whyNoSpare, type SpareReadings } from '@plumb/agent/ops/spare';
import { decideSpare, spareReserve, type SpareInputs } from '@plumb/agent/ops/spare-policy';
import { memoryOf, parseMeminfo } from '@plumb/agent/system/memory';

/** The warm spare's auto policy (agent ops/spare-policy.ts): the droplet's memory as /proc/meminfo and its cgroup say (system/memory.ts), the decision out. */

const MIB = 1024 * 1024;
/** /proc/meminfo as the kernel writes it, with MemTotal and MemAvailable in MiB. */
const meminfo = (totalMib: number, availableMib: number) =>
  `MemTotal:       ${totalMib * 1024} kB\nMemFree:         ${Math.round(availableMib / 2) * 1024} kB\nMemAvailable:   ${availableMib * 1024} kB\nBuffers:           12345 kB\nCached:           678901 kB\nSwapTotal:             0 kB\n`;

/** The droplet's memory as read from /proc/meminfo alone (a VM: no cgroup limit). */
const memory = (totalMib: number, availableMib: number) => memoryOf(meminfo(totalMib, availableMib), null);

/** A 1 GiB droplet with plenty free, one worker, a slow cold start, nothing else known. */
const base: SpareInputs = { policy: 'auto', workers: 1, memory: memory(1024, 700), expectedBytes: null, coldMs: 1000, spareMs: null };

test('spare policy: --spare keeps one and --no-spare none, whatever memory and times say', () => {
  assert.deepEqual(decideSpare({ ...base, policy: 'always', memory: memory(512, 10), workers: 4, coldMs: 100 }), { keep: true });
  assert.deepEqual(decideSpare({ ...base, policy: 'never' }), { keep: false, why: '--no-spare' });
});

test('spare policy: auto keeps one when MemAvailable less the spare stays at the reserve, max(256 MiB, 20% of MemTotal), and says the figures when not', () => {
  assert.equal(spareReserve(512 * MIB), SPARE_RESERVE_MIN_BYTES);
  assert.equal(spareReserve(4096 * MIB), Math.round(4096 * MIB * 0.2));
  // 1 GiB: the reserve is 256 MiB; a spare of no known size counts SPARE_EXPECTED_BYTES (100 MiB).
  assert.equal(SPARE_EXPECTED_BYTES, 100 * MIB);
  assert.deepEqual(decideSpare({ ...base, memory: memory(1024, 356) }), { keep: true });
  assert.deepEqual(decideSpare({ ...base, memory: memory(1024, 355) }), { keep: false, why: 'auto: 355 MiB available, a spare takes ~100 MiB, 256 MiB kept free' });
  // The API's own measure wins over the constant: a smaller spare fits where 100 MiB would not.
  assert.deepEqual(decideSpare({ ...base, memory: memory(1024, 340), expectedBytes: 80 * MIB }), { keep: true });
  // 8 GiB: 20% (1638 MiB) is the reserve.
  assert.deepEqual(decideSpare({ ...base, memory: memory(8192, 1700), expectedBytes: 80 * MIB }), { keep: false, why: 'auto: 1700 MiB available, a spare takes ~80 MiB, 1638 MiB kept free' });
  // A lab droplet reads the host's /proc/meminfo (23 GiB): a spare fits.
  assert.deepEqual(decideSpare({ ...base, memory: memory(23 * 1024, 15 * 1024) }), { keep: true });
  assert.deepEqual(decideSpare({ ...base, memory: memoryOf('MemTotal: 1 kB\n', null) }), { keep: false, why: 'auto: /proc/meminfo gives no MemTotal and MemAvailable' });
  assert.deepEqual(parseMeminfo(meminfo(2048, 1000)), { totalBytes: 2048 * MIB, availableBytes: 1000 * MIB });
});

test("spare policy: in a container (a lab droplet) /proc/meminfo is the host's, and the droplet's memory cgroup bounds it (v1 and v2 files)", () => {
  const host = meminfo(23 * 1024, 22 * 1024);
  // A lab droplet of 1 GiB, cgroup v1 as read inside it: 700 MiB used, 270 MiB of it inactive page cache.
  const v1 = { limit: `${1024 * MIB}\n`, usage: `${700 * MIB}\n`, stat: `cache 1\ninactive_file ${270 * MIB}\ntotal_inactive_file ${270 * MIB}\n` };
  assert.deepEqual(memoryOf(host, v1), { totalBytes: 1024 * MIB, availableBytes: 594 * MIB });
  assert.deepEqual(decideSpare({ ...base, memory: memoryOf(host, v1) }), { keep: true });
  assert.deepEqual(decideSpare({ ...base, memory: memoryOf(host, { ...v1, usage: `${1000 * MIB}\n` }) }), { keep: false, why: 'auto: 294 MiB available, a spare takes ~100 MiB, 256 MiB kept free' });
  // v2 without a limit ("max"), or a limit above the machine's: /proc/meminfo alone.
  assert.deepEqual(memoryOf(host, { limit: 'max\n', usage: `${700 * MIB}\n`, stat: 'inactive_file 0\n' }), parseMeminfo(host));
  assert.deepEqual(memoryOf(host, { limit: '9223372036854771712\n', usage: '1\n', stat: '' }), parseMeminfo(host));
  assert.deepEqual(memoryOf(host, null), parseMeminfo(host));
  // v1 writes the root cgroup's own inactive pages before its subtree's: the subtree's (the droplet's processes) count.
  const own = { ...v1, stat: `inactive_file ${10 * MIB}\nactive_file 1\ntotal_inactive_file ${270 * MIB}\n` };
  assert.deepEqual(memoryOf(host, own), { totalBytes: 1024 * MIB, availableBytes: 594 * MIB });
  assert.deepEqual(memoryOf(host, { ...v1, stat: `inactive_file ${100 * MIB}\n` }), { totalBytes: 1024 * MIB, availableBytes: 424 * MIB });
});

test('spare policy: auto keeps one only where the spare at least halves the cold start (its measured handover, else the floor)', () => {
  assert.equal(SPARE_HANDOVER_FLOOR_MS, 300);
  assert.deepEqual(decideSpare({ ...base, coldMs: 600 }), { keep: true });
  assert.deepEqual(decideSpare({ ...base, coldMs: 599 }), { keep: false, why: 'auto: a cold start took 0.60 s, the last spare\'s handover 0.30 s (0.30 s at best): it saved less than the handover itself took', slow: true });
  // An API whose own code takes the time (a model read in plumber.R): the spare saves R's start only.
  assert.deepEqual(decideSpare({ ...base, coldMs: 9000, spareMs: 8400 }), { keep: false, why: 'auto: a cold start took 9.00 s, the last spare\'s handover 8.40 s (8.40 s at best): it saved less than the handover itself took', slow: true });
  assert.deepEqual(decideSpare({ ...base, coldMs: 1100, spareMs: 550 }), { keep: true });
  // No cold start since the agent started (every deploy took a spare): it keeps paying.
  assert.deepEqual(decideSpare({ ...base, coldMs: null, spareMs: 400 }), { keep: true });
});

test('spare policy: a spare in use ends once its last handover takes more than it saves (cold start less the quickest handover)', () => {
  // Steady handovers of 0.4 s against a 1 s cold start: saves 0.6 s, takes 0.4 s.
  assert.deepEqual(decideSpare({ ...base, coldMs: 1000, spareMs: 400, lastSpareMs: 400 }), { keep: true });
  // The quickest alone (the rule before) would keep it for ever; the last handover grew slow.
  assert.deepEqual(decideSpare({ ...base, coldMs: 1000, spareMs: 400, lastSpareMs: 601 }), { keep: false, why: 'auto: a cold start took 1.00 s, the last spare\'s handover 0.60 s (0.40 s at best): it saved less than the handover itself took', slow: true });
  assert.deepEqual(decideSpare({ ...base, coldMs: 1000, spareMs: 400, lastSpareMs: 600 }), { keep: true });
});

test("spare policy: what other APIs' spares still loading will take is not available", () => {
  // 1 GiB, 400 MiB available: room for one spare (100 MiB) above the 256 MiB reserve.
  assert.deepEqual(decideSpare({ ...base, memory: memory(1024, 400) }), { keep: true });
  // Another API's spare started a moment ago holds 20 of its 100 MiB yet: 80 MiB are spoken for.
  assert.deepEqual(decideSpare({ ...base, memory: memory(1024, 400), loadingBytes: 80 * MIB }), { keep: false, why: 'auto: 320 MiB available, a spare takes ~100 MiB, 256 MiB kept free' });
  assert.deepEqual(decideSpare({ ...base, memory: memory(1024, 400), loadingBytes: 44 * MIB }), { keep: true });
  // Never below nothing.
  assert.deepEqual(decideSpare({ ...base, memory: memory(1024, 50), loadingBytes: 4096 * MIB }), { keep: false, why: 'auto: 0 MiB available, a spare takes ~100 MiB, 256 MiB kept free' });
});

test('spare policy: auto keeps none for an API of several workers, and says why', () => {
  assert.deepEqual(decideSpare({ ...base, workers: 2 }), { keep: false, why: 'auto: 2 workers, and one spare does not speed a redeploy whose other workers start cold' });
});

test('spare policy across versions: a deploy says true, false or auto; an older agent\'s status has no policy; a state record from before auto keeps what `spare` said', () => {
  const deploy = (spare: unknown) => DeployRequest.safeParse({ id: 1, type: 'deploy', name: 'sum', forward: false, wait: false, spare });
  for (const spare of [true, false, 'auto', undefined]) assert.ok(deploy(spare).success, String(spare));
  assert.equal(deploy('sometimes').success, false);
  assert.deepEqual([true, false, 'auto'].map((s) => requestedSparePolicy(s as boolean | 'auto')), ['always', 'never', 'auto']);
  const older = ApiStatus.parse({ name: 'sum', path: '/sum', release: '20261128T060000Z-abcd', state: 'active', workers: [], forwarded: false, deployedAt: '2026-11-28T06:00:00.000Z' });
  assert.deepEqual([older.spare, older.sparePolicy, older.spareWhy], [null, null, null]);
  assert.deepEqual([{ spare: true }, { spare: false }, {}, { spare: true, sparePolicy: 'auto' as const }].map((r) => sparePolicyOf(r as Parameters<typeof sparePolicyOf>[0])), ['always', 'never', 'never', 'auto']);
});

test('spare status: a record from before auto says why it has none without blaming --no-spare; --no-spare says so; auto gives the decision', () => {
  const why = () => 'auto: 2 workers';
  assert.equal(spareWhyOf({ name: 'sum', spare: false }, why), 'deployed before auto: `plumb deploy --spare auto` turns it on');
  assert.equal(spareWhyOf({ name: 'sum', spare: false, sparePolicy: 'never' }, why), '--no-spare');
  assert.equal(spareWhyOf({ name: 'sum', spare: false, sparePolicy: 'auto' }, why), 'auto: 2 workers');
  assert.equal(spareWhyOf({ name: 'sum', spare: true }, () => null), null);
});

test("spare measurements: only one-worker rollouts count; the quickest and the last handover are both kept", () => {
  // Several workers: the slowest of several cold starts, not comparable with one handover.
  rolloutTook('measured', 2500, false, 2);
  rolloutTook('measured', 500, true, 3);
  assert.deepEqual(measuredOf('measured'), {});
  rolloutTook('measured', 900, false, 1);
  rolloutTook('measured', 400, true, 1);
  rolloutTook('measured', 700, true, 1);
  assert.deepEqual(measuredOf('measured'), { coldMs: 900, spareMs: 400, lastSpareMs: 700 });
});

test("the time rule's reset: a spare ended as slow forgets its last handover, so the next decision tries a spare again", async () => {
  // What auto reads of the droplet, given here instead of systemd's and /proc's.
  const readings = (availableMib: number) => async (): Promise<SpareReadings> => ({ memory: memory(1024, availableMib), workerBytes: 60 * MIB, loadingBytes: 0 });
  // Handovers of 0.5 s against a 2 s cold start, then one slow one (a busy moment): 2.5 s.
  rolloutTook('slowed', 2000, false, 1);
  rolloutTook('slowed', 500, true, 1);
  rolloutTook('slowed', 2500, true, 1);
  // No room: a "no" of another rule than time's keeps the measurements as they are.
  assert.deepEqual(await keepSpare('slowed', 'auto', [8001], readings(300)), { keep: false, why: 'auto: 300 MiB available, a spare takes ~60 MiB, 256 MiB kept free' });
  assert.equal(measuredOf('slowed').lastSpareMs, 2500);
  const slow = await keepSpare('slowed', 'auto', [8001], readings(700));
  assert.deepEqual(slow, { keep: false, why: "auto: a cold start took 2.00 s, the last spare's handover 2.50 s (0.50 s at best): it saved less than the handover itself took", slow: true });
  assert.equal(whyNoSpare('slowed'), slow.why, 'plumb status says why');
  const { coldMs, spareMs, lastSpareMs } = measuredOf('slowed');
  assert.deepEqual([coldMs, spareMs, lastSpareMs], [2000, 500, undefined], 'the slow handover is forgotten, the quickest kept');
  // The next decision (after the next deploy, which starts cold with no spare) keeps one again.
  assert.deepEqual(await keepSpare('slowed', 'auto', [8002], readings(700)), { keep: true });
});

test('one spare decision per live release: asked again while one is queued for it (a deploy that failed just after one that answered), none more is queued', () => {
  const first = spareUndecided('queued', 'r1');
  assert.ok(first, 'the first is queued');
  assert.equal(spareUndecided('queued', 'r1'), undefined, 'the same release again: that one decides');
  const later = spareUndecided('queued', 'r2');
  assert.ok(later, 'another release (a later deploy) has its own');
  first.decided();
  assert.equal(whyNoSpare('queued'), null, 'still being decided (r2)');
  later.decided();
  assert.equal(whyNoSpare('queued'), 'none since the agent started: the next deploy decides');
  assert.ok(spareUndecided('queued', 'r1'), 'decided: the release may be decided again (a failed deploy that used up its spare)');
});

test("spare decisions: while one is to come plumb status gives no reason; the agent start's yields to one a deploy asks for after it", () => {
  noSpare('api', 'auto: 2 workers');
  const atStart = spareUndecided('api', 'r1')!;
  assert.equal(whyNoSpare('api'), null, 'being decided: no reason given');
  assert.equal(atStart.superseded(), false);
  const deploy = spareUndecided('api', 'r2')!;
  assert.deepEqual([atStart.superseded(), deploy.superseded()], [true, false]);
  deploy.decided();
  assert.equal(atStart.superseded(), true, 'the deploy decided: still not the start\'s to decide');
  assert.equal(whyNoSpare('api'), null);
  atStart.decided();
  assert.equal(whyNoSpare('api'), 'none since the agent started: the next deploy decides');
  // Decided twice is once; a later decision is nobody's successor.
  atStart.decided();
  const next = spareUndecided('api', 'r2')!;
  assert.equal(next.superseded(), false);
  next.decided();
  // Other APIs' decisions do not supersede.
  const one = spareUndecided('one', 'r1')!;
  spareUndecided('two', 'r1');
  assert.equal(one.superseded(), false);
});
