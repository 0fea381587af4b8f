import type { WebSocket } from 'ws';
import { BUNDLE_HIGH_WATER_BYTES, BUNDLE_MAX_BYTES, PlumbError, UPLOAD_IDLE_TIMEOUT_MS } from '@plumb/shared';

/** Bytes accepted in all, and the refusal past them. */
export interface UploadCap {
  bytes: number;
  refusal: () => PlumbError;
}

const BUNDLE_CAP: UploadCap = {
  bytes: BUNDLE_MAX_BYTES,
  refusal: () => new PlumbError('BUNDLE_TOO_LARGE', `the bundle is over ${BUNDLE_MAX_BYTES / 1024 / 1024} MiB compressed`, 'leave large data out with .plumbignore and have the API fetch it when it starts, into /var/plumber/NAME/data/ (kept across releases)'),
};

/**
 * A bundle arriving as binary WebSocket frames, read as an async iterable. When more than
 * `highWater` bytes wait unread, the socket is paused (TCP then slows the sender), so what waits
 * here stays under `highWater` plus what ws hands over from its last read of the socket (at most
 * one frame, WS_MAX_PAYLOAD_BYTES, and the rest of that read), however fast the sender.
 */
export class Upload implements AsyncIterable<Buffer> {
  /** An upload read from `ws`'s binary frames, pausing that socket while the reader is behind. */
  static fromSocket(ws: WebSocket, cap: UploadCap = BUNDLE_CAP, highWater = BUNDLE_HIGH_WATER_BYTES): Upload {
    return new Upload(() => ws.pause(), () => ws.resume(), highWater, cap);
  }

  private readonly queue: Buffer[] = [];
  private queued = 0;
  /** The most bytes that waited unread at once: what receiving cost in buffers (bench/, tests). */
  private peak = 0;
  private received = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
    private readonly highWater: number,
    private readonly cap: UploadCap = BUNDLE_CAP,
    private readonly idleTimeoutMs = UPLOAD_IDLE_TIMEOUT_MS,
  ) {}

  /** What came and the most that waited unread at once: a bounded receive keeps the second near `highWater`. */
  get counts(): { receivedBytes: number; peakQueuedBytes: number } {
    return { receivedBytes: this.received, peakQueuedBytes: this.peak };
  }

  push(chunk: Buffer): void {
    if (this.ended) return;
    this.received += chunk.length;
    if (this.received > this.cap.bytes) return this.fail(this.cap.refusal());
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.peak = Math.max(this.peak, this.queued);
    if (this.queued > this.highWater) this.pause();
    this.wake?.();
  }

  /** The sender says it is done and how many bytes it sent; a mismatch means the stream was cut. */
  end(bytes: number): void {
    if (bytes !== this.received) return this.fail(new PlumbError('BUNDLE_TRUNCATED', `the bundle arrived cut short (${this.received} of ${bytes} bytes)`));
    this.ended = true;
    this.wake?.();
  }

  /** The operation no longer reads: drop what came and what still comes, and let the socket flow. */
  discard(): void {
    this.ended = true;
    this.queue.length = 0;
    this.queued = 0;
    this.resume();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.ended = true;
    this.resume();
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      if (this.failure) throw this.failure;
      const chunk = this.queue.shift();
      if (chunk) {
        this.queued -= chunk.length;
        if (this.queued <= this.highWater / 2) this.resume();
        yield chunk;
        continue;
      }
      if (this.ended) return;
      // Waiting for the sender (never while paused for backpressure: the queue then holds data).
      const idle = setTimeout(() => this.fail(new PlumbError('BUNDLE_STALLED', `no bundle bytes arrived for ${this.idleTimeoutMs / 1000} s: the upload stalled`, 'check the connection and deploy again')), this.idleTimeoutMs);
      await new Promise<void>((resolve) => (this.wake = resolve));
      clearTimeout(idle);
      this.wake = undefined;
    }
  }
}
