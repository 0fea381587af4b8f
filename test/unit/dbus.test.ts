import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DBusClosedError, DBusConnection, DBusError, decodeMessage, encodeCall, marshal, messageLength, splitSignature, unmarshal } from '@plumb/agent/system/dbus';
import { showTimestamp, toUnitState, unitPath } from '@plumb/agent/system/systemd-bus';

describe('D-Bus wire format', () => {
  test('a signature splits into complete types', () => {
    assert.deepEqual(splitSignature('sa{sv}(uo)aas'), ['s', 'a{sv}', '(uo)', 'aas']);
    assert.throws(() => splitSignature('(ss'), /unbalanced/);
  });

  test('values are aligned as the specification says and read back the same', () => {
    // y then u: three bytes of padding; s: length, bytes, NUL; then an array of strings aligned to 4.
    const body = marshal('yusas', [7, 258, 'ab', ['x', 'yz']]);
    assert.equal(body.toString('hex'), '07000000' + '02010000' + '02000000616200' + '00' + '0f000000' + '0100000078000000' + '02000000797a00');
    assert.deepEqual(unmarshal('yusas', body), [7, 258, 'ab', ['x', 'yz']]);
  });

  test('an array of structs pads to 8 after its length, and the length leaves that padding out', () => {
    const body = marshal('a(yv)', [[[1, ['s', 'a']]]]);
    assert.equal(body.toString('hex'), '0a000000' + '00000000' + '01' + '017300' + '01000000' + '6100');
    assert.deepEqual(unmarshal('a(yv)', body), [[[1, 'a']]]);
  });

  test('a variant holding a struct with a 64-bit value, as systemd sends Job and timestamps', () => {
    const body = marshal('v', [['(uo)', [3, '/org/freedesktop/systemd1/job/3']]]);
    assert.deepEqual(unmarshal('v', body), [[3, '/org/freedesktop/systemd1/job/3']]);
  });

  test('a method call frames as one whole message and decodes back', () => {
    const call = encodeCall(5, { destination: 'org.freedesktop.systemd1', path: '/org/freedesktop/systemd1/unit/a_2eservice', interface: 'org.freedesktop.DBus.Properties', member: 'Get', signature: 'ss', body: ['org.freedesktop.systemd1.Unit', 'ActiveState'] });
    assert.equal(call.subarray(0, 4).toString('hex'), '6c010001', 'little-endian method call, protocol 1');
    assert.equal(messageLength(call.subarray(0, call.length - 1)), 0, 'one byte short is not yet a message');
    assert.equal(messageLength(Buffer.concat([call, call])), call.length);
    const message = decodeMessage(call);
    assert.deepEqual({ type: message.type, serial: message.serial, signature: message.signature, body: message.body }, { type: 1, serial: 5, signature: 'ss', body: ['org.freedesktop.systemd1.Unit', 'ActiveState'] });
  });
});

describe("systemd's side", () => {
  test('unit object paths are escaped as systemd does (bus_label_escape)', () => {
    assert.equal(unitPath('dbus.service'), '/org/freedesktop/systemd1/unit/dbus_2eservice');
    assert.equal(unitPath('plumber-st1@8001.service'), '/org/freedesktop/systemd1/unit/plumber_2dst1_408001_2eservice');
    assert.equal(unitPath('1a.service'), '/org/freedesktop/systemd1/unit/_31a_2eservice');
  });

  test('timestamps read as `systemctl show` prints them on a UTC droplet, and 0 is never', () => {
    assert.equal(showTimestamp(1_795_930_415_123_456n), 'Sun 2026-11-29 05:33:35 UTC');
    assert.equal(showTimestamp(0n), null);
    assert.ok(Number.isFinite(Date.parse(showTimestamp(1_795_930_415_123_456n)!)), 'the controller parses it for the uptime column');
  });

  test('property values become a UnitState; missing Service properties read as systemctl leaves them', () => {
    assert.deepEqual(toUnitState(['active', 'running', 'success', 2, 4242, 1_795_930_415_000_000n, [0, '/']]), { active: 'active', sub: 'running', result: 'success', restarts: 2, pid: 4242, since: 'Sun 2026-11-29 05:33:35 UTC', queued: false });
    assert.deepEqual(toUnitState(['inactive', 'dead', undefined, undefined, 0, 0n, [7, '/org/freedesktop/systemd1/job/7']]), { active: 'inactive', sub: 'dead', result: 'unknown', restarts: 0, pid: null, since: null, queued: true });
  });
});

test('a peer that authenticates and then never answers: the call fails as closed and the connection is dropped', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-dbus-mute-'));
  const socketPath = path.join(dir, 'mute');
  const server = net.createServer((peer) => peer.on('data', (chunk: Buffer) => void (chunk.includes('AUTH') && peer.write('OK 0123456789abcdef\r\n'))));
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  try {
    const connection = await DBusConnection.open(socketPath, { hello: false, timeoutMs: 200 });
    await assert.rejects(connection.call({ path: '/', interface: 'x.y', member: 'Z' }), DBusClosedError);
    assert.equal(connection.closed, true);
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('only a method return or an error answers a call: a signal carrying its serial does not', async () => {
  /** A reply-shaped message of `type` with no body, answering serial `to`. */
  const replyOf = (type: number, serial: number, to: number) => {
    const m = Buffer.alloc(24);
    m.set([0x6c, type, 0, 1]);
    m.writeUInt32LE(0, 4);
    m.writeUInt32LE(serial, 8);
    m.writeUInt32LE(8, 12);
    m.set([5, 1, 0x75 /* u */, 0], 16);
    m.writeUInt32LE(to, 20);
    return m;
  };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-dbus-forged-'));
  const socketPath = path.join(dir, 'forger');
  let peer: net.Socket | undefined;
  const server = net.createServer((p) => {
    peer = p;
    p.on('data', (chunk: Buffer) => void (chunk.includes('AUTH') && p.write('OK 0123456789abcdef\r\n')));
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  let connection: DBusConnection | undefined;
  try {
    connection = await DBusConnection.open(socketPath, { hello: false, timeoutMs: 5_000 });
    let answered = false;
    const call = connection.call({ path: '/', interface: 'x.y', member: 'Z' }).then((body) => ((answered = true), body));
    await new Promise((r) => setTimeout(r, 50));
    peer!.write(replyOf(4 /* signal */, 900, 1));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(answered, false, 'a signal answered the call');
    peer!.write(replyOf(2 /* method return */, 901, 1));
    assert.deepEqual(await call, []);
  } finally {
    connection?.close();
    peer?.destroy();
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

// A real dbus-daemon on a socket of its own: authentication, pipelined calls, error replies and a
// dropped connection against the reference implementation, not against our own encoder.
// scripts/setup.sh installs it: a missing one fails these tests rather than skipping them.
describe('against a real dbus-daemon', () => {
  let dir: string;
  let bus: ChildProcess;
  let socket: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-dbus-'));
    socket = path.join(dir, 'bus');
    bus = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=1', `--address=unix:path=${socket}`], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise((resolve) => bus.stdout!.once('data', resolve));
  });
  after(async () => {
    bus.kill();
    await rm(dir, { recursive: true, force: true });
  });

  const DBUS = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };

  test('authenticates as this uid, and pipelined calls are each answered with their own reply', async () => {
    const connection = await DBusConnection.open(socket, { hello: true, timeoutMs: 5_000 });
    try {
      const [names, uid, features] = await Promise.all([
        connection.call({ ...DBUS, member: 'ListNames' }),
        connection.call({ ...DBUS, member: 'GetConnectionUnixUser', signature: 's', body: ['org.freedesktop.DBus'] }),
        connection.call({ ...DBUS, interface: 'org.freedesktop.DBus.Properties', member: 'Get', signature: 'ss', body: ['org.freedesktop.DBus', 'Interfaces'] }),
      ]);
      assert.ok((names[0] as string[]).includes('org.freedesktop.DBus'));
      assert.equal(typeof uid[0], 'number');
      assert.ok(Array.isArray(features[0]), 'a variant holding an array of strings');
      const [credentials] = await connection.call({ ...DBUS, member: 'GetConnectionCredentials', signature: 's', body: ['org.freedesktop.DBus'] });
      assert.ok((credentials as [string, unknown][]).some(([key]) => key === 'UnixUserID'), 'a dict of variants, entries aligned to 8');
      const many = await Promise.all(Array.from({ length: 200 }, () => connection.call({ ...DBUS, member: 'GetId' })));
      assert.equal(new Set(many.map(([id]) => id)).size, 1);
    } finally {
      connection.close();
    }
  });

  test('an error reply rejects that call with its name; the connection stays usable', async () => {
    const connection = await DBusConnection.open(socket, { hello: true, timeoutMs: 5_000 });
    try {
      await assert.rejects(connection.call({ ...DBUS, member: 'NoSuchMethod' }), (e: unknown) => e instanceof DBusError && e.errorName === 'org.freedesktop.DBus.Error.UnknownMethod');
      assert.equal((await connection.call({ ...DBUS, member: 'GetId' })).length, 1);
    } finally {
      connection.close();
    }
  });

  test('a closed connection fails its calls as closed, and nothing listening is a closed error too', async () => {
    const connection = await DBusConnection.open(socket, { hello: true, timeoutMs: 5_000 });
    connection.close();
    await assert.rejects(connection.call({ ...DBUS, member: 'GetId' }), DBusClosedError);
    await assert.rejects(DBusConnection.open(path.join(dir, 'nobody'), { hello: true, timeoutMs: 5_000 }), DBusClosedError);
  });
});
