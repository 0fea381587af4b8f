import net from 'node:net';

/**
 * A userspace stand-in for `tc netem delay` (not available on these machines): a TCP proxy on
 * 127.0.0.1 that holds every chunk `oneWayMs` before passing it on, in each direction, so a
 * connection through it sees its round trip grow by twice that. Order is kept (same delay for
 * every chunk); bandwidth is not limited.
 */
export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

/** Bytes held per direction before the sender is paused: a window, so a big upload does not pile up here. */
const WINDOW_BYTES = 8 * 1024 * 1024;

export async function startDelayProxy(target: { host: string; port: number }, oneWayMs: number): Promise<DelayProxy> {
  const sockets = new Set<net.Socket>();
  const relay = (from: net.Socket, to: net.Socket) => {
    let held = 0;
    const full = () => held + to.writableLength > WINDOW_BYTES;
    const resume = () => {
      if (from.isPaused() && !full()) from.resume();
    };
    to.on('drain', resume);
    from.on('data', (chunk) => {
      held += chunk.length;
      if (full()) from.pause();
      setTimeout(() => {
        held -= chunk.length;
        if (to.writable) to.write(chunk);
        resume();
      }, oneWayMs);
    });
    from.on('end', () => setTimeout(() => to.end(), oneWayMs));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), oneWayMs + 1));
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
