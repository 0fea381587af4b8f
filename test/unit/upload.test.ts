import assert from 'node:assert/strict';
import { test } from 'node:test';
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
