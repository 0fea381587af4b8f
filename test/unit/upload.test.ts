import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { BUNDLE_HIGH_WATER_BYTES, WS_MAX_PAYLOAD_BYTES } from '@plumb/shared';
import { Upload } from '@plumb/agent/upload';

const drain = async (upload: Upload) => {
  const chunks: Buffer[] = [];
  for await (const chunk of upload) chunks.push(chunk);
  return Buffer.concat(chunks);
};

test('upload: a sender that goes quiet mid-bundle fails the read with BUNDLE_STALLED', async () => {
  const upload = new Upload(() => {}, () => {}, 1024, undefined, 200);
  upload.push(Buffer.from('first bytes'));
  await assert.rejects(drain(upload), (err: Error & { code?: string }) => err.code === 'BUNDLE_STALLED' && /no bundle bytes arrived for 0.2 s/.test(err.message));
});

test('upload: bytes that keep coming within the idle limit are read whole', async () => {
  const upload = new Upload(() => {}, () => {}, 1024, undefined, 200);
  const reading = drain(upload);
  for (let i = 0; i < 5; i++) {
    upload.push(Buffer.from(String(i)));
    await new Promise((r) => setTimeout(r, 100));
  }
  upload.end(5);
  assert.equal(String(await reading), '01234');
});

test('upload: a sender faster than the disk waits in TCP, not in the agent: at most the high-water mark and one frame wait unread', async () => {
  // The agent's own wiring (Upload.fromSocket, as a deploy gets it) behind a real socket on loopback.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: WS_MAX_PAYLOAD_BYTES });
  await once(wss, 'listening');
  const received = new Promise<{ sha256: string; bytes: number; peak: number }>((resolve, reject) => {
    wss.once('connection', (ws) => {
      const upload = Upload.fromSocket(ws);
      ws.on('message', (data, isBinary) => (isBinary ? upload.push(data as Buffer) : upload.end(Number(String(data)))));
      void (async () => {
        const hash = createHash('sha256');
        let bytes = 0;
        for await (const chunk of upload) {
          hash.update(chunk);
          bytes += chunk.length;
          // The disk: slower than loopback by far.
          await new Promise((r) => setTimeout(r, 2));
        }
        return { sha256: hash.digest('hex'), bytes, peak: upload.counts.peakQueuedBytes };
      })().then(resolve, reject);
    });
  });
  // A sender that never looks at backpressure (not plumb's controller: anyone with a key), in frames of 1 MiB.
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  await once(client, 'open');
  const sent = createHash('sha256');
  const frames = 64;
  for (let i = 0; i < frames; i++) {
    const frame = randomBytes(1024 * 1024);
    sent.update(frame);
    client.send(frame, { binary: true });
  }
  client.send(String(frames * 1024 * 1024));
  const got = await received;
  client.close();
  wss.close();
  assert.equal(got.bytes, frames * 1024 * 1024);
  assert.equal(got.sha256, sent.digest('hex'), 'every byte arrived, in order');
  assert.ok(got.peak > BUNDLE_HIGH_WATER_BYTES, `the reader fell behind (else this shows nothing): at most ${got.peak} bytes waited`);
  const bound = BUNDLE_HIGH_WATER_BYTES + WS_MAX_PAYLOAD_BYTES;
  assert.ok(got.peak <= bound, `${got.peak} bytes waited unread at once; the bound is ${bound} (high-water mark + one frame)`);
});
