import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { copyFile, mkdtemp, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JOURNAL_ENTRY_MAX_FIELDS, JOURNAL_FIELD_MAX_BYTES } from '@plumb/shared';
import { JournalFile, JournalFormatError, type JournalEntry, type JournalField } from '@plumb/agent/system/journal-file';
import { verdict } from '@plumb/agent/ops/logs-ahead';
import { ofApi, parseJournalLine } from '@plumb/agent/system/journal';
import { startInDropletImage } from './droplet-image.js';

/**
 * The journal file reader (system/journal-file.ts) on files journald 257 itself wrote: the lab's
 * Debian 13 image runs systemd-journald in a chroot, the test writes lines to it (one long enough
 * for journald to compress, one over JOURNAL_FIELD_MAX_BYTES, one with PRIORITY twice), and journalctl of the same image prints what
 * it reads from the file, which the reader must agree with. Once in compact mode (the default) and
 * once in the older regular mode.
 */

const MACHINE_ID = '5f1c0d7e2a4b4c6d8e9f00112233aabb';
const LONG = 'x'.repeat(3000);
/** Over JOURNAL_FIELD_MAX_BYTES, through journald's native socket (a stdout line is cut at 48 KiB). */
const HUGE = 'y'.repeat(JOURNAL_FIELD_MAX_BYTES + 1);

interface Written {
  file: string;
  /** journalctl -o json --all of the same file, one object per entry. */
  printed: Array<Record<string, unknown>>;
  lines: string[];
}

async function journaldWrites(compact: boolean, dir: string): Promise<Written> {
  const script = [
    'set -e',
    // The older layout without compression: the long line is then read, the huge one still not.
    `SYSTEMD_JOURNAL_COMPACT=${compact ? 1 : 0} SYSTEMD_JOURNAL_COMPRESS=${compact ? 1 : 0} /usr/lib/systemd/systemd-journald >/dev/null 2>&1 &`,
    'j=$!',
    'for i in $(seq 200); do [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done',
    'echo short one | systemd-cat -t plumber-demo',
    `printf '%s\\n' '${LONG}' | systemd-cat -t plumber-demo`,
    `{ printf 'MESSAGE='; yes y | tr -d '\\n' | head -c ${HUGE.length}; printf '\\nSYSLOG_IDENTIFIER=plumber-demo\\n'; } | logger --journald`,
    // logger joins MESSAGE= lines into one; PRIORITY twice stays twice.
    "printf 'MESSAGE=twice\\nPRIORITY=5\\nPRIORITY=6\\nSYSLOG_IDENTIFIER=plumber-demo\\n' | logger --journald",
    "printf 'caf\\303\\251 \\033[1m bold\\n' | systemd-cat -t plumber-demo",
    'echo short two | systemd-cat -t plumber-demo',
    'for i in $(seq 100); do journalctl -D /run/log/journal -o cat --no-pager SYSLOG_IDENTIFIER=plumber-demo | grep -q "short two" && break; sleep 0.05; done',
    // journald logs its own stop: journalctl reads the file once it is complete.
    'kill $j; wait $j || true',
    'journalctl -D /run/log/journal -o json --all --no-pager > /printed.json',
  ].join('\n');
  const run = await startInDropletImage({ '/etc/machine-id': `${MACHINE_ID}\n` }, ['sh', '-c', script], 60_000, { sys: true });
  try {
    const result = await run.process;
    assert.equal(result.exitCode, 0, `journald in the image: ${result.stderr}`);
    const journalDir = path.join(run.upper, 'run/log/journal', MACHINE_ID);
    const name = (await readdir(journalDir)).find((f) => f === 'system.journal');
    assert.ok(name, `journald wrote ${journalDir}/system.journal`);
    const file = path.join(dir, `${compact ? 'compact' : 'regular'}.journal`);
    await copyFile(path.join(journalDir, name), file);
    const lines = (await readFile(path.join(run.upper, 'printed.json'), 'utf8')).split('\n').filter((l) => l.length > 0);
    return { file, printed: lines.map((l) => JSON.parse(l) as Record<string, unknown>), lines };
  } finally {
    await run.done();
  }
}

/** Every entry of a file with its fields, read from its first object on. */
function readAll(file: string): Array<{ entry: JournalEntry; fields: JournalField[] | undefined }> {
  const journal = JournalFile.open(file);
  try {
    const header = journal.readHeader();
    return journal.entries(header.headerSize, Number.MAX_SAFE_INTEGER).entries.map((entry) => ({ entry, fields: journal.fieldsOf(entry) }));
  } finally {
    journal.close();
  }
}

const demo = (e: { fields: JournalField[] | undefined }) => e.fields?.some((f) => f !== 'unreadable' && f.name === 'SYSLOG_IDENTIFIER' && f.value.toString() === 'plumber-demo');
const keepAll = () => true;
const MATCHES = ['SYSLOG_IDENTIFIER=plumber-demo'];

let dir: string;
const written: Record<string, Written> = {};

describe('journal files journald 257 wrote', () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'plumb-journal-'));
    written['compact'] = await journaldWrites(true, dir);
    written['regular'] = await journaldWrites(false, dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const mode of ['compact', 'regular']) {
    describe(`journal file (${mode})`, () => {
      test('every entry journalctl prints is read, in order, with its cursor, time and fields; a compressed field is unreadable, nothing else', () => {
        const { file, printed } = written[mode]!;
        const read = readAll(file);
        assert.equal(read.length, printed.length);
        read.forEach(({ entry, fields }, i) => {
          const j = printed[i]!;
          assert.equal(entry.cursor, j['__CURSOR']);
          assert.equal(entry.realtime, Number(j['__REALTIME_TIMESTAMP']));
          assert.ok(fields);
          for (const f of fields) {
            if (f === 'unreadable') continue;
            const value = j[f.name];
            const bytes = Array.isArray(value) && value.every((v) => typeof v === 'number') ? Buffer.from(value as number[]) : undefined;
            if (Array.isArray(value) && !bytes) assert.ok((value as unknown[]).includes(f.value.toString()), `${f.name} is one of its values`);
            else assert.deepEqual(f.value, bytes ?? Buffer.from(String(value)), f.name);
          }
        });
        // What journald compressed (over 512 bytes, compact mode) or what is over JOURNAL_FIELD_MAX_BYTES, and nothing else of the test's lines.
        const unreadable = read.flatMap((e, i) => (demo(e) && e.fields?.includes('unreadable') ? [printed[i]!['MESSAGE']] : []));
        assert.deepEqual(unreadable, mode === 'compact' ? [LONG, HUGE] : [HUGE]);
        for (const e of read) assert.ok((e.fields?.filter((f) => f === 'unreadable').length ?? 0) <= 1);
      });

      test('a follow shows what journalctl would, as journalctl would; the compressed line, the huge one and PRIORITY twice wait for journalctl', () => {
        const { file, lines } = written[mode]!;
        const read = readAll(file);
        const shown = read.map((e, i) => ({ v: verdict(e.entry, e.fields, MATCHES, keepAll), line: lines[i]! }));
        const fromDemo = shown.filter((_, i) => demo(read[i]!));
        assert.deepEqual(
          fromDemo.map(({ v }) => (typeof v === 'string' ? v : v.show.entry.message)),
          ['short one', mode === 'compact' ? 'wait' : LONG, 'wait', 'wait', 'café \x1b[1m bold', 'short two'],
        );
        for (const { v, line } of fromDemo) if (typeof v !== 'string') assert.deepEqual(v.show, parseJournalLine(line));
        // Not matched: skipped (journalctl -f with these matches never prints them); with a field not read, left to journalctl.
        for (const [i, { v }] of shown.entries()) if (!demo(read[i]!)) assert.equal(v, read[i]!.fields?.includes('unreadable') ? 'wait' : 'skip');
      });

      test('the tail: entries after tail_entry_offset are not read (journald has not linked them yet); a file cut short is an error, not a hang', async () => {
        const { file } = written[mode]!;
        const read = readAll(file);
        const cut = path.join(dir, `${mode}-tail.journal`);
        await copyFile(file, cut);
        const handle = await open(cut, 'r+');
        const offset = Buffer.alloc(8);
        offset.writeBigUInt64LE(BigInt(read.at(-2)!.entry.offset));
        await handle.write(offset, 0, 8, 264);
        await handle.close();
        assert.deepEqual(readAll(cut).map((e) => e.entry.seqnum), read.slice(0, -1).map((e) => e.entry.seqnum));
        await copyFile(file, cut);
        await truncate(cut, read.at(-1)!.entry.offset + 20);
        assert.throws(() => readAll(cut), JournalFormatError);
        // An entry with more than JOURNAL_ENTRY_MAX_FIELDS fields: its head is read, its fields are not, and the follow waits for journalctl.
        await copyFile(file, cut);
        const last = read.at(-1)!.entry;
        const size = 64 + (JOURNAL_ENTRY_MAX_FIELDS + 1) * (mode === 'compact' ? 4 : 16);
        await truncate(cut, last.offset + size);
        const big = await open(cut, 'r+');
        const sizeBytes = Buffer.alloc(8);
        sizeBytes.writeBigUInt64LE(BigInt(size));
        await big.write(sizeBytes, 0, 8, last.offset + 8);
        await big.close();
        const many = readAll(cut).at(-1)!;
        assert.equal(many.entry.seqnum, last.seqnum);
        assert.equal(many.fields, undefined);
        assert.equal(verdict(many.entry, many.fields, MATCHES, keepAll), 'wait');
      });

      test('hostile bytes: any byte of the file changed, the reader reads or refuses (JournalFormatError), and always ends', async () => {
        const { file } = written[mode]!;
        const original = await readFile(file);
        const changed = path.join(dir, `${mode}-hostile.journal`);
        let seed = 42;
        const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
        let refused = 0;
        for (let round = 0; round < 300; round++) {
          const bytes = Buffer.from(original);
          // Mostly where it matters: the header's numbers and the objects' sizes, offsets and items.
          for (let k = 0; k < 4; k++) {
            const at = round % 3 === 0 ? Math.floor(random() * 272) : Math.floor(random() * bytes.length);
            bytes[at] = Math.floor(random() * 256);
          }
          await writeFile(changed, bytes);
          try {
            readAll(changed);
          } catch (err) {
            assert.ok(err instanceof JournalFormatError, `round ${round}: ${(err as Error).stack}`);
            refused++;
          }
        }
        assert.ok(refused > 0, 'some changes are refused');
      });
    });
  }
});

describe('verdict', () => {
  const entry: JournalEntry = { offset: 4096, next: 4160, seqnum: 7, realtime: 1700000000000000, cursor: 's=00000000000000000000000000000001;i=7', items: [] };
  const f = (name: string, value: string): JournalField => ({ name, value: Buffer.from(value) });
  const worker = [f('_PID', '42'), f('_UID', '990'), f('SYSLOG_IDENTIFIER', 'plumber-a'), f('_SYSTEMD_UNIT', 'plumber-a@9000.service'), f('PRIORITY', '3')];
  const keep = (r: Parameters<typeof ofApi>[1]) => ofApi('a', r);
  const matches = ['SYSLOG_IDENTIFIER=plumber-a', '_PID=1', '_UID=990'];

  test("the API's line is shown with journalctl's fields; another unit's is skipped even with a compressed field", () => {
    const v = verdict(entry, [...worker, f('MESSAGE', 'hi'), 'unreadable'], matches, keep);
    assert.deepEqual(v, { show: { entry: { time: 1700000000000000, unit: 'plumber-a@9000.service', priority: 3, message: 'hi' }, cursor: entry.cursor, trustedUnit: 'plumber-a@9000.service' } });
    assert.equal(verdict(entry, [f('_PID', '7'), f('_SYSTEMD_UNIT', 'cron.service'), 'unreadable'], matches, keep), 'skip');
    assert.equal(typeof verdict(entry, [f('_PID', '1'), f('UNIT', 'plumber-a@9001.service'), f('MESSAGE', 'Started.')], matches, keep), 'object', "PID 1's line about a worker");
  });

  test('what the file does not tell waits for journalctl: the message compressed, a field twice, no unit, too many fields, a unit in bytes', () => {
    assert.equal(verdict(entry, [...worker, 'unreadable'], matches, keep), 'wait');
    assert.equal(verdict(entry, [...worker, f('MESSAGE', 'a'), f('MESSAGE', 'b')], matches, keep), 'wait');
    assert.equal(verdict(entry, [f('_PID', '42'), f('MESSAGE', 'hi'), 'unreadable'], matches, keep), 'wait');
    assert.equal(verdict({ ...entry, items: undefined }, undefined, matches, keep), 'wait');
    assert.equal(verdict(entry, [...worker, f('MESSAGE', 'hi'), f('UNIT', 'x\x01y')], matches, keep), 'wait');
  });

  test("a line of the API's unit that journalctl's matches would not print is skipped (journalctl is the truth)", () => {
    assert.equal(verdict(entry, [f('_PID', '42'), f('_UID', '991'), f('SYSLOG_IDENTIFIER', 'other'), f('_SYSTEMD_UNIT', 'plumber-a@9000.service'), f('MESSAGE', 'hi')], matches, keep), 'skip');
  });
});
