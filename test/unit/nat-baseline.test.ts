import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NatBaseline, tableListing, type TableListing } from '@plumb/agent/system/nat-baseline';

/**
 * natLost's baseline (system/nat.ts): whether the agent's nftables table is still the one it put
 * there. The listings are given here; test/e2e/request-path.test.ts flushes the real table.
 */

const table = (text: string): TableListing => ({ kind: 'table', text });
const absent: TableListing = { kind: 'absent' };
const unknown: TableListing = { kind: 'unknown' };

/** A baseline whose listings are `listings`, one per call, in order. */
function baselineOf(...listings: TableListing[]): NatBaseline {
  return new NatBaseline(async () => listings.shift() ?? assert.fail('listed more often than expected'));
}

test('nat baseline: nft saying there is no such table is absent; a failure, a timeout or no nft at all is unknown', () => {
  assert.deepEqual(tableListing({ exitCode: 0, stdout: 'table ip plumb {\n}', stderr: '' }), table('table ip plumb {\n}'));
  assert.deepEqual(tableListing({ exitCode: 1, stdout: '', stderr: 'Error: No such file or directory\nlist table ip plumb\n                 ^^^^^' }), absent);
  assert.deepEqual(tableListing({ exitCode: 1, stdout: '', stderr: 'Error: Operation not permitted' }), unknown);
  assert.deepEqual(tableListing({ exitCode: undefined, stdout: '', stderr: '' }), unknown);
  assert.deepEqual(tableListing(undefined), unknown);
});

test('nat baseline: nothing is lost before the first apply; after it, a changed or absent table is', async () => {
  assert.equal(await baselineOf().lost(), false);
  const changed = baselineOf(table('a'), table('a'), table('b'));
  changed.applied();
  assert.equal(await changed.lost(), false);
  assert.equal(await changed.lost(), true);
  const flushed = baselineOf(table('a'), absent);
  flushed.applied();
  assert.equal(await flushed.lost(), true);
});

test('nat baseline: a listing behind the apply that failed is no baseline: unchanged until one is read, then compared with it', async () => {
  const later = baselineOf(unknown, table('a'), table('a'), table('b'));
  later.applied();
  assert.equal(await later.lost(), false, 'the first look reads the baseline');
  assert.equal(await later.lost(), false);
  assert.equal(await later.lost(), true, 'a change after it is seen');
  const gone = baselineOf(unknown, absent);
  gone.applied();
  assert.equal(await gone.lost(), true, 'a table the agent applied and nft no longer has is lost whatever the baseline');
});

test('nat baseline: a look whose listing fails says nothing is lost (no routing-restored for nothing), and the baseline stays', async () => {
  const baseline = baselineOf(table('a'), unknown, table('a'), table('b'));
  baseline.applied();
  assert.equal(await baseline.lost(), false);
  assert.equal(await baseline.lost(), false);
  assert.equal(await baseline.lost(), true);
});
