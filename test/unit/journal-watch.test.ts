import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { JournalWatch } from '@plumb/agent/system/journal-watch';

/**
 * What `logs -f` learns from the journal file's header, on files laid out as journald lays them
 * out (systemd's docs/JOURNAL_FILE_FORMAT.md: the signature, then n_entries at byte 152). That a
 * real journald's file reads the same is for the lab (user-behaviour's logs -f, bench/deploy.ts).
 */

const machineId = '0123456789abcdef0123456789abcdef';
let dir: string;
let journal: string;

/** A header with `entries` entries, as journald would have left it. */
function header(entries: number): Buffer {
  const buf = Buffer.alloc(256);
  buf.write('LPKSHHRH', 0, 'latin1');
  buf.writeBigUInt64LE(BigInt(entries), 152);
  return buf;
}

async function setEntries(file: string, entries: number): Promise<void> {
  // In place, as journald's writes through its mapping are: the same file, no new inode.
  const handle = await open(file, 'r+');
  await handle.write(header(entries), 0, 256, 0);
  await handle.close();
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-journal-'));
  await mkdir(path.join(dir, machineId));
  journal = path.join(dir, machineId, 'system.journal');
  await writeFile(journal, header(5));
});
after(() => rm(dir, { recursive: true, force: true }));

test('logs -f: the journal watch says when journald appended an entry, and follows the file journald rotates to', async () => {
  const watch = await JournalWatch.open({ dirs: [dir], machineId });
  assert.ok(watch);
  const signal = new AbortController().signal;
  try {
    await setEntries(journal, 6);
    assert.equal(await watch.grown(signal), true, 'an entry appended');
    // Rotation: journald renames the file and starts a new one, whose count starts again.
    await rename(journal, path.join(dir, machineId, 'system@0001-0002.journal'));
    await writeFile(journal, header(1));
    assert.equal(await watch.grown(signal), true, 'a new file to watch');
    await setEntries(journal, 2);
    assert.equal(await watch.grown(signal), true, 'an entry in the new file');
    // Nothing appended: it waits until the follow is cancelled.
    const stop = new AbortController();
    const waiting = watch.grown(stop.signal);
    stop.abort();
    assert.equal(await waiting, false);
  } finally {
    await watch.close();
  }
});

test('logs -f: no journal file (or not a journal) means no watch, and the agent follows with journalctl -f', async () => {
  assert.equal(await JournalWatch.open({ dirs: [path.join(dir, 'none')], machineId }), undefined);
  const other = await mkdtemp(path.join(os.tmpdir(), 'plumb-journal-'));
  await mkdir(path.join(other, machineId));
  await writeFile(path.join(other, machineId, 'system.journal'), 'not a journal');
  assert.equal(await JournalWatch.open({ dirs: [other], machineId }), undefined);
  await rm(other, { recursive: true, force: true });
});
