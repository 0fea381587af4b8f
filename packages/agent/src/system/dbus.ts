import net from 'node:net';

/**
 * A small D-Bus client: the wire format (little-endian out, either order in), EXTERNAL
 * authentication as the agent's uid, and method calls pipelined on one connection. Enough to
 * ask systemd about units without a `systemctl` process per question; no signals, no fds.
 */

/** A decoded value: numbers for 32-bit and smaller, bigint for 64-bit, arrays for arrays and structs, variants unwrapped. */
export type DBusValue = string | number | bigint | boolean | DBusValue[];

/** The peer answered with a D-Bus error (its name, e.g. org.freedesktop.systemd1.NoSuchUnit). */
export class DBusError extends Error {
  constructor(
    /** The D-Bus error name, e.g. org.freedesktop.systemd1.NoSuchUnit. */
    readonly errorName: string,
    message: string,
  ) {
    super(message);
  }
}

/** The connection closed or could not be made: the question may be asked again on a new one. */
export class DBusClosedError extends Error {}

const ALIGN: Record<string, number> = { y: 1, b: 4, n: 2, q: 2, i: 4, u: 4, x: 8, t: 8, d: 8, s: 4, o: 4, g: 1, a: 4, '(': 8, '{': 8, v: 1, h: 4 };

/** Splits a signature into its complete types: 'sa{sv}(uo)' -> ['s', 'a{sv}', '(uo)']. */
export function splitSignature(signature: string): string[] {
  const types: string[] = [];
  let i = 0;
  while (i < signature.length) {
    const end = completeTypeEnd(signature, i);
    types.push(signature.slice(i, end));
    i = end;
  }
  return types;
}

function completeTypeEnd(sig: string, start: number): number {
  const c = sig[start];
  if (c === 'a') return completeTypeEnd(sig, start + 1);
  if (c === '(' || c === '{') {
    const close = c === '(' ? ')' : '}';
    let i = start + 1;
    while (sig[i] !== close) {
      if (i >= sig.length) throw new Error(`unbalanced D-Bus signature ${sig}`);
      i = completeTypeEnd(sig, i);
    }
    return i + 1;
  }
  if (c === undefined || !(c in ALIGN)) throw new Error(`bad D-Bus signature ${sig}`);
  return start + 1;
}

class Writer {
  private chunks: Buffer[] = [];
  length = 0;
  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  align(n: number): void {
    const pad = (n - (this.length % n)) % n;
    if (pad) this.push(Buffer.alloc(pad));
  }
  u8(v: number): void {
    this.push(Buffer.from([v]));
  }
  u32(v: number): void {
    this.align(4);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  bytes(b: Buffer): void {
    this.push(b);
  }
  /** Room for a value written later (an array's length). */
  placeholder(): { buffer: Buffer; at: number } {
    this.align(4);
    const b = Buffer.alloc(4);
    const at = this.length;
    this.push(b);
    return { buffer: b, at };
  }
  result(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function write(w: Writer, type: string, value: unknown): void {
  const c = type[0]!;
  switch (c) {
    case 'y':
      w.u8(Number(value));
      return;
    case 'b':
      w.u32(value ? 1 : 0);
      return;
    case 'u':
    case 'i': {
      w.align(4);
      const b = Buffer.alloc(4);
      if (c === 'u') b.writeUInt32LE(Number(value));
      else b.writeInt32LE(Number(value));
      w.bytes(b);
      return;
    }
    case 's':
    case 'o': {
      const b = Buffer.from(String(value), 'utf8');
      w.u32(b.length);
      w.bytes(b);
      w.u8(0);
      return;
    }
    case 'g': {
      const b = Buffer.from(String(value), 'ascii');
      w.u8(b.length);
      w.bytes(b);
      w.u8(0);
      return;
    }
    case 'v': {
      const [signature, inner] = value as [string, unknown];
      write(w, 'g', signature);
      write(w, signature, inner);
      return;
    }
    case 'a': {
      const element = type.slice(1);
      const length = w.placeholder();
      w.align(ALIGN[element[0]!]!);
      const first = w.length;
      for (const item of value as unknown[]) write(w, element, item);
      length.buffer.writeUInt32LE(w.length - first);
      return;
    }
    case '(':
    case '{': {
      w.align(8);
      const fields = splitSignature(type.slice(1, -1));
      fields.forEach((field, i) => write(w, field, (value as unknown[])[i]));
      return;
    }
    default:
      throw new Error(`writing D-Bus type ${type} is not supported`);
  }
}

/** Marshals values for a signature, aligned as at the start of a message body. */
export function marshal(signature: string, values: readonly unknown[]): Buffer {
  const w = new Writer();
  splitSignature(signature).forEach((type, i) => write(w, type, values[i]));
  return w.result();
}

class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
    private readonly little: boolean,
    /** Alignment is counted from here (the message's start). */
    private readonly origin = 0,
  ) {}
  align(n: number): void {
    const rel = this.pos - this.origin;
    this.pos += (n - (rel % n)) % n;
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new Error('D-Bus message ends inside a value');
  }
  u32(): number {
    this.align(4);
    this.need(4);
    const v = this.little ? this.buf.readUInt32LE(this.pos) : this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  read(type: string): DBusValue {
    const c = type[0]!;
    const b = this.buf;
    const L = this.little;
    switch (c) {
      case 'y':
        this.need(1);
        return b[this.pos++]!;
      case 'b':
        return this.u32() !== 0;
      case 'n':
      case 'q': {
        this.align(2);
        this.need(2);
        const v = c === 'n' ? (L ? b.readInt16LE(this.pos) : b.readInt16BE(this.pos)) : L ? b.readUInt16LE(this.pos) : b.readUInt16BE(this.pos);
        this.pos += 2;
        return v;
      }
      case 'u':
      case 'h':
        return this.u32();
      case 'i': {
        this.align(4);
        this.need(4);
        const v = L ? b.readInt32LE(this.pos) : b.readInt32BE(this.pos);
        this.pos += 4;
        return v;
      }
      case 'x':
      case 't':
      case 'd': {
        this.align(8);
        this.need(8);
        const v = c === 'x' ? (L ? b.readBigInt64LE(this.pos) : b.readBigInt64BE(this.pos)) : c === 't' ? (L ? b.readBigUInt64LE(this.pos) : b.readBigUInt64BE(this.pos)) : L ? b.readDoubleLE(this.pos) : b.readDoubleBE(this.pos);
        this.pos += 8;
        return v;
      }
      case 's':
      case 'o': {
        const length = this.u32();
        this.need(length + 1);
        const v = b.toString('utf8', this.pos, this.pos + length);
        this.pos += length + 1;
        return v;
      }
      case 'g': {
        this.need(1);
        const length = b[this.pos++]!;
        this.need(length + 1);
        const v = b.toString('ascii', this.pos, this.pos + length);
        this.pos += length + 1;
        return v;
      }
      case 'v':
        return this.read(this.read('g') as string);
      case 'a': {
        const length = this.u32();
        const element = type.slice(1);
        this.align(ALIGN[element[0]!]!);
        const end = this.pos + length;
        this.need(length);
        const items: DBusValue[] = [];
        while (this.pos < end) items.push(this.read(element));
        return items;
      }
      case '(':
      case '{':
        this.align(8);
        return splitSignature(type.slice(1, -1)).map((field) => this.read(field));
      default:
        throw new Error(`reading D-Bus type ${type} is not supported`);
    }
  }
}

/** Unmarshals a body laid out from offset 0 (a message body starts 8-aligned). */
export function unmarshal(signature: string, body: Buffer, little = true): DBusValue[] {
  const r = new Reader(body, 0, little);
  return splitSignature(signature).map((type) => r.read(type));
}

export const MessageType = { MethodCall: 1, MethodReturn: 2, Error: 3, Signal: 4 } as const;

const FIELD = { path: 1, interface: 2, member: 3, errorName: 4, replySerial: 5, destination: 6, signature: 8 } as const;

export interface Call {
  destination?: string;
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: readonly unknown[];
}

/** A method call message, little-endian. */
export function encodeCall(serial: number, call: Call): Buffer {
  const body = call.signature ? marshal(call.signature, call.body ?? []) : Buffer.alloc(0);
  const fields: [number, [string, unknown]][] = [
    [FIELD.path, ['o', call.path]],
    [FIELD.interface, ['s', call.interface]],
    [FIELD.member, ['s', call.member]],
  ];
  if (call.destination) fields.push([FIELD.destination, ['s', call.destination]]);
  if (call.signature) fields.push([FIELD.signature, ['g', call.signature]]);
  const w = new Writer();
  w.bytes(Buffer.from([0x6c /* 'l' */, MessageType.MethodCall, 0, 1]));
  w.u32(body.length);
  w.u32(serial);
  write(w, 'a(yv)', fields);
  w.align(8);
  w.bytes(body);
  return w.result();
}

export interface Message {
  type: number;
  serial: number;
  replySerial?: number;
  errorName?: string;
  signature: string;
  body: DBusValue[];
}

/** The D-Bus specification's largest message: 128 MiB. */
const MESSAGE_MAX_BYTES = 128 * 1024 * 1024;

/** Bytes of the first whole message in `buf`, or 0 when more must arrive. */
export function messageLength(buf: Buffer): number {
  if (buf.length < 16) return 0;
  const little = buf[0] === 0x6c;
  const bodyLength = little ? buf.readUInt32LE(4) : buf.readUInt32BE(4);
  const fieldsLength = little ? buf.readUInt32LE(12) : buf.readUInt32BE(12);
  const headerEnd = 16 + fieldsLength + ((8 - ((16 + fieldsLength) % 8)) % 8);
  const total = headerEnd + bodyLength;
  // The specification's limit: a longer message is a broken stream, not one to wait for.
  if (total > MESSAGE_MAX_BYTES) throw new Error(`D-Bus message of ${total} bytes, over the ${MESSAGE_MAX_BYTES} allowed`);
  return buf.length >= total ? total : 0;
}

/** Decodes one whole message (as `messageLength` cut it). */
export function decodeMessage(buf: Buffer): Message {
  const little = buf[0] === 0x6c;
  if (!little && buf[0] !== 0x42) throw new Error(`D-Bus message with endianness byte ${buf[0]}`);
  const r = new Reader(buf, 4, little);
  const bodyLength = r.u32();
  const serial = r.u32();
  const fields = r.read('a(yv)') as [number, DBusValue][];
  r.align(8);
  const field = (code: number) => fields.find(([c]) => c === code)?.[1];
  const signature = (field(FIELD.signature) as string | undefined) ?? '';
  const body = signature ? unmarshal(signature, buf.subarray(r.pos, r.pos + bodyLength), little) : [];
  const replySerial = field(FIELD.replySerial) as number | undefined;
  const errorName = field(FIELD.errorName) as string | undefined;
  return { type: buf[1]!, serial, signature, body, ...(replySerial !== undefined ? { replySerial } : {}), ...(errorName !== undefined ? { errorName } : {}) };
}

interface Pending {
  resolve(body: DBusValue[]): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** One authenticated connection; calls may be in flight together and are answered by serial. */
export class DBusConnection {
  private serial = 0;
  private readonly pending = new Map<number, Pending>();
  private buffered: Buffer = Buffer.alloc(0);
  closed = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('close', () => this.close(new DBusClosedError('the D-Bus connection closed')));
    socket.on('error', (error) => this.close(new DBusClosedError(`the D-Bus connection failed: ${error.message}`)));
  }

  /**
   * Connects to a unix socket and authenticates as this process's uid. `hello` is for a message
   * bus (dbus-daemon), which wants Hello first; systemd's own private socket is a direct peer.
   */
  static async open(socketPath: string, options: { hello: boolean; timeoutMs: number }): Promise<DBusConnection> {
    const socket = net.createConnection(socketPath);
    try {
      await authenticate(socket, options.timeoutMs);
    } catch (error) {
      socket.destroy();
      throw new DBusClosedError(`D-Bus at ${socketPath}: ${(error as Error).message}`);
    }
    const connection = new DBusConnection(socket, options.timeoutMs);
    if (options.hello) await connection.call({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'Hello' });
    return connection;
  }

  call(call: Call): Promise<DBusValue[]> {
    if (this.closed) return Promise.reject(new DBusClosedError('the D-Bus connection is closed'));
    // Serials are 32-bit and never 0.
    const serial = (this.serial = this.serial >= 0xffffffff ? 1 : this.serial + 1);
    return new Promise((resolve, reject) => {
      // A peer that does not answer in time is dropped with every call on it: the next question
      // opens a new connection rather than queue behind a stuck one.
      const timer = setTimeout(() => this.close(new DBusClosedError(`no D-Bus answer to ${call.member} within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.pending.set(serial, { resolve, reject, timer });
      this.socket.write(encodeCall(serial, call));
    });
  }

  close(error: Error = new DBusClosedError('the D-Bus connection was closed')): void {
    if (!this.closed) {
      this.closed = true;
      this.socket.destroy();
    }
    for (const [serial, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(serial);
      p.reject(error);
    }
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    for (;;) {
      let length: number;
      let message: Message;
      try {
        length = messageLength(this.buffered);
        if (length === 0) return;
        message = decodeMessage(this.buffered.subarray(0, length));
      } catch (error) {
        this.close(new DBusClosedError(`unreadable D-Bus message: ${(error as Error).message}`));
        return;
      }
      this.buffered = this.buffered.subarray(length);
      // Only a method's return or error answers a call.
      const reply = message.type === MessageType.MethodReturn || message.type === MessageType.Error;
      const p = !reply || message.replySerial === undefined ? undefined : this.pending.get(message.replySerial);
      if (!p) continue; // signals, and calls to us: nothing here asks for them
      this.pending.delete(message.replySerial!);
      clearTimeout(p.timer);
      if (message.type === MessageType.Error) p.reject(new DBusError(message.errorName ?? 'org.freedesktop.DBus.Error.Failed', typeof message.body[0] === 'string' ? message.body[0] : (message.errorName ?? 'D-Bus error')));
      else p.resolve(message.body);
    }
  }
}

/** The SASL exchange: NUL, AUTH EXTERNAL <uid in hex>, wait for OK, BEGIN. */
function authenticate(socket: net.Socket, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => done(new Error(`no authentication answer within ${timeoutMs} ms`)), timeoutMs);
    const done = (error?: Error) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onError = (error: Error) => done(error);
    const onClose = () => done(new Error('closed during authentication'));
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n');
      if (end < 0) return;
      const line = text.slice(0, end);
      if (!line.startsWith('OK ')) return done(new Error(`authentication refused: ${line}`));
      socket.write('BEGIN\r\n');
      done();
    };
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.once('connect', () => {
      const uid = String(process.getuid?.() ?? 0);
      socket.write(`\0AUTH EXTERNAL ${Buffer.from(uid, 'ascii').toString('hex')}\r\n`);
    });
  });
}
