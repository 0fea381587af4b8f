import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { JOURNAL_ENTRY_MAX_FIELDS, JOURNAL_FIELD_CACHE_ENTRIES, JOURNAL_FIELD_MAX_BYTES } from '@plumb/shared';

/*
 * journald's file, read as it is written: systemd's docs/JOURNAL_FILE_FORMAT.md and
 * src/libsystemd/sd-journal/journal-def.h. Every number in it is checked against the file's size
 * before it is used: the fields are the APIs' bytes, and the file is journald's to change under us.
 *
 * When an entry is complete: journald takes the entry's place (the header's tail_object_offset)
 * and its seqnum (tail_entry_seqnum) BEFORE it writes the entry's fields, and sets the header's
 * tail_entry_offset only after a fence, once the entry is linked (journal-file.c,
 * journal_file_append_entry_internal and journal_file_link_entry). So an entry is read only if it
 * starts at or before tail_entry_offset; tail_entry_seqnum alone would let a half-written one through.
 */

const HEADER_BYTES = 272;
const SIGNATURE = 'LPKSHHRH';
const INCOMPATIBLE_COMPACT = 1 << 4;
/** XZ, LZ4, keyed hash, ZSTD, compact: what systemd 257 knows. */
const INCOMPATIBLE_KNOWN = 0x1f;
export const STATE_ONLINE = 1;
export const STATE_ARCHIVED = 2;
const OBJECT_HEADER_BYTES = 16;
const OBJECT_DATA = 1;
const OBJECT_ENTRY = 3;
const OBJECT_TYPE_MAX = 7;
const COMPRESSED_MASK = 0x7;
/** ENTRY: header, seqnum, realtime, monotonic, boot_id, xor_hash; then the items. */
const ENTRY_ITEMS_AT = 64;
/** DATA: header, hash, next_hash, next_field, entry, entry_array, n_entries (64); compact adds two le32. */
const DATA_PAYLOAD_AT = { regular: 64, compact: 72 } as const;
/** Fields longer than this are not kept between looks: the cache holds JOURNAL_FIELD_CACHE_ENTRIES of them at most. */
const FIELD_CACHED_MAX_BYTES = 512;

/** The file is not what this reader understands, or moved under it: the caller stops reading it. */
export class JournalFormatError extends Error {}

export interface JournalHeader {
  state: number;
  compact: boolean;
  /** 32 hex digits, as in a cursor's `s=`. */
  seqnumId: string;
  headerSize: number;
  /** Where the last complete entry starts (0: none yet). */
  tailEntryOffset: number;
}

/** One field of an entry: its name and raw value, or `unreadable` (compressed, too big, no `=`). */
export type JournalField = { name: string; value: Buffer } | 'unreadable';

export interface JournalEntry {
  offset: number;
  /** Where the next object starts. */
  next: number;
  seqnum: number;
  realtime: number;
  /** `s=…;i=…;b=…;m=…;t=…;x=…`, as journalctl prints it. */
  cursor: string;
  /** Where the entry's fields are (DATA objects); undefined past JOURNAL_ENTRY_MAX_FIELDS. */
  items: number[] | undefined;
}

function u64(b: Buffer, at: number): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new JournalFormatError(`a number at ${at} is past 2^53`);
  return Number(v);
}

const hex = (b: Buffer, at: number) => b.toString('hex', at, at + 16);
const align8 = (n: number) => n + ((8 - (n % 8)) % 8);

export function parseHeader(b: Buffer): JournalHeader {
  if (b.length < HEADER_BYTES || b.toString('latin1', 0, 8) !== SIGNATURE) throw new JournalFormatError('not a journal file');
  const incompatible = b.readUInt32LE(12);
  if (incompatible & ~INCOMPATIBLE_KNOWN) throw new JournalFormatError(`unknown incompatible flags 0x${incompatible.toString(16)}`);
  const headerSize = u64(b, 88);
  // tail_entry_offset came with systemd 254; without it there is no safe end to read to.
  if (headerSize < HEADER_BYTES) throw new JournalFormatError(`header of ${headerSize} bytes has no tail_entry_offset`);
  return { state: b.readUInt8(16), compact: (incompatible & INCOMPATIBLE_COMPACT) !== 0, seqnumId: hex(b, 72), headerSize, tailEntryOffset: u64(b, 264) };
}

/**
 * A journal file open for reading by position. Reads are synchronous: what is read was just
 * written, so it is in the page cache, and a follow's look at the file is then one step that
 * nothing else interleaves with.
 */
export class JournalFile {
  readonly ino: number;
  private size = 0;
  private header: JournalHeader | undefined;
  /** Fields by where they are: journald writes each distinct field once and entries point to it. */
  private readonly fields = new Map<number, JournalField>();

  private constructor(
    readonly path: string,
    private readonly fd: number,
  ) {
    this.ino = fstatSync(fd).ino;
  }

  static open(path: string): JournalFile {
    return new JournalFile(path, openSync(path, 'r'));
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Whether the path now names another file (journald rotated it or started a new one). */
  replaced(): boolean {
    try {
      return statSync(this.path).ino !== this.ino;
    } catch {
      return true;
    }
  }

  /** The header as it is now, and the file's size (every offset is checked against it). */
  readHeader(): JournalHeader {
    const header = parseHeader(this.read(0, HEADER_BYTES));
    this.size = fstatSync(this.fd).size;
    if (header.tailEntryOffset !== 0) this.checkPlace(header.tailEntryOffset, OBJECT_HEADER_BYTES, header);
    this.header = header;
    return header;
  }

  /**
   * The complete entries from `from` on (an object's start), in the file's order, walking at most
   * `maxBytes`; and where the walk stopped (the next object to look at). Objects other than entries
   * are stepped over. Never past the header's tail entry (see the top of this file).
   */
  entries(from: number, maxBytes: number): { entries: JournalEntry[]; next: number } {
    const header = this.header ?? this.readHeader();
    const entries: JournalEntry[] = [];
    let at = from;
    while (header.tailEntryOffset !== 0 && at <= header.tailEntryOffset && at - from < maxBytes) {
      this.checkPlace(at, OBJECT_HEADER_BYTES, header);
      const object = this.read(at, OBJECT_HEADER_BYTES);
      const type = object.readUInt8(0);
      const size = u64(object, 8);
      if (type === 0 || type > OBJECT_TYPE_MAX || size < OBJECT_HEADER_BYTES) throw new JournalFormatError(`no object at ${at}`);
      this.checkPlace(at, size, header);
      if (type === OBJECT_ENTRY) entries.push(this.entry(at, size, header));
      at += align8(size);
    }
    return { entries, next: at };
  }

  /** An entry's fields, in its order. More than JOURNAL_ENTRY_MAX_FIELDS: undefined. */
  fieldsOf(entry: JournalEntry): JournalField[] | undefined {
    return entry.items?.map((at) => this.field(at));
  }

  private entry(at: number, size: number, header: JournalHeader): JournalEntry {
    const itemBytes = header.compact ? 4 : 16;
    if (size < ENTRY_ITEMS_AT || (size - ENTRY_ITEMS_AT) % itemBytes !== 0) throw new JournalFormatError(`entry at ${at} has ${size} bytes`);
    const count = (size - ENTRY_ITEMS_AT) / itemBytes;
    const many = count > JOURNAL_ENTRY_MAX_FIELDS;
    // The items are read only when there are few enough to be worth it; the head always.
    const b = this.read(at, many ? ENTRY_ITEMS_AT : size);
    const seqnum = u64(b, 16);
    const realtime = u64(b, 24);
    if (seqnum === 0) throw new JournalFormatError(`entry at ${at} has no seqnum`);
    const item = (i: number) => (header.compact ? b.readUInt32LE(ENTRY_ITEMS_AT + i * 4) : u64(b, ENTRY_ITEMS_AT + i * 16));
    const items = many ? undefined : Array.from({ length: count }, (_, i) => item(i));
    const x = (n: number) => n.toString(16);
    const cursor = `s=${header.seqnumId};i=${x(seqnum)};b=${hex(b, 40)};m=${b.readBigUInt64LE(32).toString(16)};t=${x(realtime)};x=${b.readBigUInt64LE(56).toString(16)}`;
    return { offset: at, next: at + align8(size), seqnum, realtime, cursor, items };
  }

  private field(at: number): JournalField {
    const known = this.fields.get(at);
    if (known) return known;
    const header = this.header!;
    this.checkPlace(at, OBJECT_HEADER_BYTES, header);
    const payloadAt = header.compact ? DATA_PAYLOAD_AT.compact : DATA_PAYLOAD_AT.regular;
    const head = this.read(at, OBJECT_HEADER_BYTES);
    const size = u64(head, 8);
    if (head.readUInt8(0) !== OBJECT_DATA || size < payloadAt) throw new JournalFormatError(`no field at ${at}`);
    this.checkPlace(at, size, header);
    let field: JournalField = 'unreadable';
    if ((head.readUInt8(1) & COMPRESSED_MASK) === 0 && size - payloadAt <= JOURNAL_FIELD_MAX_BYTES) {
      const payload = this.read(at + payloadAt, size - payloadAt);
      const eq = payload.indexOf(0x3d);
      if (eq > 0) field = { name: payload.toString('latin1', 0, eq), value: payload.subarray(eq + 1) };
    }
    // The fields entries share are short (units, pids, identifiers); a message is rarely met again.
    // Bounded simply: a full cache starts again (the fields that matter come back at once).
    if (field !== 'unreadable' && field.value.length > FIELD_CACHED_MAX_BYTES) return field;
    if (this.fields.size >= JOURNAL_FIELD_CACHE_ENTRIES) this.fields.clear();
    this.fields.set(at, field);
    return field;
  }

  /** `size` bytes at `at` lie in the file, after its header, on an 8-byte boundary. */
  private checkPlace(at: number, size: number, header: JournalHeader): void {
    if (at % 8 !== 0 || at < header.headerSize || at + size > this.size) throw new JournalFormatError(`${size} bytes at ${at} are outside the file (${this.size} bytes)`);
  }

  private read(at: number, length: number): Buffer {
    const b = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, b, got, length - got, at + got);
      if (n === 0) throw new JournalFormatError(`the file ends before ${at + length}`);
      got += n;
    }
    return b;
  }
}
