import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { test } from 'node:test';
import { openConnections } from '@plumb/agent/ops/drain';

/** The drain's view of a worker: connections open on its port, read from the kernel's TCP table. */

test('openConnections counts the connections a server on a port holds: one per open client, none once they close, never the listener', async () => {
  const server = net.createServer((socket) => socket.on('error', () => {}));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  try {
    assert.equal(await openConnections(port), 0, 'a listener alone is no request in flight');
    const clients = await Promise.all([1, 2].map(async () => {
      const client = net.connect(port, '127.0.0.1');
      await once(client, 'connect');
      return client;
    }));
    assert.equal(await openConnections(port), 2);
    for (const client of clients) client.destroy();
    let open = 2;
    for (let i = 0; i < 50 && open > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      open = await openConnections(port);
    }
    assert.equal(open, 0, 'closed connections are not counted');
  } finally {
    server.close();
  }
});
