import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LOG_ENTRY_MAX_BYTES } from '@plumb/shared';
import { bounded } from '@plumb/agent/ops/logs';
import { ofApi, parseJournalLine, readArgs } from '@plumb/agent/system/journal';
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

test('logs -f: a followed line is the API\'s when journald says its unit is one of the API\'s workers, whatever the port or what the writer claims', () => {
  const record = (fields: Record<string, string>) => parseJournalLine(JSON.stringify({ __CURSOR: 's=1;i=2', __REALTIME_TIMESTAMP: '1700000000000000', MESSAGE: 'm', ...fields }))!;
  const worker = record({ _PID: '4242', SYSLOG_IDENTIFIER: 'plumber-a', _SYSTEMD_UNIT: 'plumber-a@9731.service' });
  assert.equal(worker.cursor, 's=1;i=2');
  assert.deepEqual(worker.entry, { time: 1700000000000000, unit: 'plumber-a@9731.service', priority: 6, message: 'm' });
  assert.ok(ofApi('a', worker));
  const started = record({ _PID: '1', SYSLOG_IDENTIFIER: 'systemd', UNIT: 'plumber-a@9732.service', _SYSTEMD_UNIT: 'init.scope' });
  assert.ok(ofApi('a', started));
  assert.equal(started.entry.unit, 'plumber-a@9732.service');
  assert.ok(!ofApi('a', record({ _PID: '1', UNIT: 'plumber-ab@9000.service' })), "another API's unit");
  assert.ok(!ofApi('a', record({ _PID: '1', UNIT: 'cron.service' })));
  // Another API's process writing as plumber-a, or naming plumber-a's unit: journald's _SYSTEMD_UNIT says whose it is.
  assert.ok(!ofApi('a', record({ _PID: '77', SYSLOG_IDENTIFIER: 'plumber-a', UNIT: 'plumber-a@9731.service', _SYSTEMD_UNIT: 'plumber-b@9001.service' })));
  assert.equal(parseJournalLine('not json'), undefined);
  // journalctl's own matches: one field per term, `+` between; the start is a cursor or the asking moment.
  assert.deepEqual(readArgs('a', { sinceMs: 1700000000123 }).slice(-4), ['--since=@1700000000.123', 'SYSLOG_IDENTIFIER=plumber-a', '+', '_PID=1']);
  assert.ok(readArgs('a', { afterCursor: 's=1;i=2' }).includes('--after-cursor=s=1;i=2'));
});
