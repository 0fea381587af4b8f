import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LOG_ENTRY_MAX_BYTES } from '@plumb/shared';
import { bounded } from '@plumb/agent/ops/logs';
import { terminalSafe } from '@plumb/controller/output/terminal';

test('terminalSafe: escape sequences, carriage returns, C1 and bidi overrides from a droplet are shown, not obeyed', () => {
  assert.equal(terminalSafe('\x1b]0;owned\x07\x1b[2J\rok\tdone'), '\\x1b]0;owned\\x07\\x1b[2J\\x0dok\tdone');
  assert.equal(terminalSafe('a\u009bb\u202ec'), 'a\\x9bb\\u202ec');
  assert.equal(terminalSafe('plain text, ünïcode ✓'), 'plain text, ünïcode ✓');
});

test('logs: a journal message over the entry limit is cut on a character boundary and says so', () => {
  const entry = { time: 1, unit: 'plumber-a@9000.service', priority: 6, message: 'é'.repeat(LOG_ENTRY_MAX_BYTES) };
  const cut = bounded(entry);
  assert.ok(Buffer.byteLength(cut.message) < LOG_ENTRY_MAX_BYTES + 100);
  assert.match(cut.message, /^é+ \[plumb: \d+ more bytes cut\]$/);
  const kept = cut.message.replace(/ \[plumb.*$/, '');
  assert.equal(Buffer.byteLength(kept) + Number(/(\d+) more/.exec(cut.message)?.[1]), Buffer.byteLength(entry.message));
  assert.deepEqual(bounded({ ...entry, message: 'short' }), { ...entry, message: 'short' });
});
