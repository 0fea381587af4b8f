import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { test } from 'node:test';
import { WS_MAX_PAYLOAD_BYTES } from '@plumb/shared';
import { AgentConnection } from '@plumb/controller/agent/client';
import { tokenFor } from '@plumb/controller/agent/tokens';
import type { AuthTarget } from './agent-auth.cases.js';
import { agentSocket } from './agent-socket.js';

/**
 * Malformed WebSocket frames from a client holding a valid token, run against any enrolled agent
 * (a local one in unit tests, a lab droplet's end to end): each must close that one socket with
 * the protocol's close code and leave the agent serving everyone else.
 */

/** A client-to-server frame as RFC 6455 §5.2 lays it out, masked as clients must; `length` may lie. */
function frame(opcode: number, payload: Buffer, opts: { fin?: boolean; length?: number } = {}): Buffer {
  const length = opts.length ?? payload.length;
  const head = [((opts.fin ?? true) ? 0x80 : 0) | opcode];
  let extended = Buffer.alloc(0);
  if (length < 126) head.push(0x80 | length);
  else if (length < 65536) {
    head.push(0x80 | 126);
    extended = Buffer.alloc(2);
    extended.writeUInt16BE(length);
  } else {
    head.push(0x80 | 127);
    extended = Buffer.alloc(8);
    extended.writeBigUInt64BE(BigInt(length));
  }
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from(head), extended, mask, masked]);
}

/** Opens an authenticated socket, writes `bytes` raw under it, and returns the close code the agent sent. */
async function closeCodeFor(t: AuthTarget, bytes: Buffer): Promise<number> {
  const { ws, tls: socket } = await agentSocket(t);
  // The client side sees the agent's close frame; its own parser may also complain about what follows.
  ws.on('error', () => {});
  await once(ws, 'message'); // hello
  socket.write(bytes);
  const [code] = (await once(ws, 'close')) as [number];
  return code;
}

/** The agent still answers a fresh, well-formed connection with its hello. */
export async function agentStillServes(t: AuthTarget): Promise<void> {
  const connection = await AgentConnection.open(t.address, t.pin, await tokenFor(t.key, t.dropletUuid));
  assert.equal(connection.hello.dropletUuid, t.dropletUuid);
  connection.close();
}

export function agentFrameCases(target: () => AuthTarget): void {
  const cases: [string, () => Buffer, number][] = [
    ['a text frame announcing more than the payload limit is closed with 1009', () => frame(0x1, Buffer.alloc(0), { length: WS_MAX_PAYLOAD_BYTES + 1 }), 1009],
    ['a text frame of invalid UTF-8 is closed with 1007', () => frame(0x1, Buffer.from([0xc3, 0x28, 0xff])), 1007],
    ['a frame with a reserved opcode is closed with 1002', () => frame(0x3, Buffer.from('x')), 1002],
    ['a fragmented control frame is closed with 1002', () => frame(0x9, Buffer.from('ping'), { fin: false }), 1002],
  ];
  for (const [name, bytes, code] of cases) {
    test(`agent: ${name} and keeps serving`, async () => {
      const t = target();
      assert.equal(await closeCodeFor(t, bytes()), code);
      await agentStillServes(t);
    });
  }
}
