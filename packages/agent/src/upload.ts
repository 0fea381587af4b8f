import { BUNDLE_MAX_BYTES, PlumbError, UPLOAD_IDLE_TIMEOUT_MS } from '@plumb/shared';

/**
 * A bundle arriving as binary WebSocket frames, read as an async iterable. When more than
 * `highWater` bytes wait unread, the socket is paused (TCP then slows the sender).
 */
export class Upload implements AsyncIterable<Buffer> {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private received = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
    private readonly highWater: number,
    /** Bytes accepted in all, and the refusal past them. */
    private readonly cap: { bytes: number; refusal: () => PlumbError } = { bytes: BUNDLE_MAX_BYTES, refusal: () => new PlumbError('BUNDLE_TOO_LARGE', `the bundle is over ${BUNDLE_MAX_BYTES / 1024 / 1024} MiB`, 'add large files that the API does not need to .plumbignore') },
    private readonly idleTimeoutMs = UPLOAD_IDLE_TIMEOUT_MS,
  ) {}

  push(chunk: Buffer): void {
    if (this.ended) return;
    this.received += chunk.length;
    if (this.received > this.cap.bytes) return this.fail(this.cap.refusal());
    this.queue.push(chunk);
    this.queued += chunk.length;
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
