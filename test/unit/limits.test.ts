import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { ACME_DIRECTORY_MAX_BYTES, AGENT_HTTP_BODY_MAX_BYTES, PlumbError } from '@plumb/shared';
import { termsOfService } from '@plumb/controller/acme/directory';
import { connectTls, httpsOver, type AgentAddress } from '@plumb/controller/agent/client';

/**
 * What a server plumb does not trust yet may answer the controller, read through the controller's
 * own code up to each limit and one byte past it: an agent or its bootstrap before the pin (an
 * impostor at a droplet's address), and the ACME directory PLUMB_ACME_SERVER names.
 */

const TERMS = 'https://ca.example/terms';

/** An ACME directory padded to exactly `bytes`. */
function directory(bytes: number): Buffer {
  const [head, tail] = [`{"meta":{"termsOfService":"${TERMS}"},"pad":"`, '"}'];
  return Buffer.from(head + 'x'.repeat(bytes - head.length - tail.length) + tail);
}

/** A server that never stops sending until the reader hangs up. */
function endless(res: ServerResponse): void {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  res.on('error', () => {});
  const more = () => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', more);
  };
  more();
}

const refused = (code: string, message: RegExp) => (err: unknown) => err instanceof PlumbError && err.code === code && message.test(err.message);

describe('answers from servers plumb does not trust yet are read up to their limits', () => {
  let dir: string;
  let server: https.Server;
  let address: AgentAddress;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-limits-'));
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${dir}/k`, '-out', `${dir}/c`, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    const cert = await readFile(`${dir}/c`, 'utf8');
    server = https.createServer({ key: await readFile(`${dir}/k`, 'utf8'), cert }, (req, res) => {
      const [, kind = '', size = '0'] = (req.url ?? '').split('/');
      if (kind === 'endless') return endless(res);
      res.end(kind === 'directory' ? directory(Number(size)) : Buffer.alloc(Number(size), 'x'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    address = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
    // The ACME client checks the server's certificate as it would Let's Encrypt's: this one is trusted here.
    https.globalAgent.options.ca = cert;
  });

  after(async () => {
    delete https.globalAgent.options.ca;
    https.globalAgent.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const plainAnswer = async (path: string) => httpsOver(await connectTls(address, null), 'GET', path, {});

  test(`an agent's or bootstrap's plain answer (before the pin) is read up to ${AGENT_HTTP_BODY_MAX_BYTES} bytes; one more, or an endless one, ends the request`, async () => {
    assert.equal((await plainAnswer(`/bytes/${AGENT_HTTP_BODY_MAX_BYTES}`)).body.length, AGENT_HTTP_BODY_MAX_BYTES);
    const over = refused('AGENT_PROTOCOL', new RegExp(`answer to /(bytes/${AGENT_HTTP_BODY_MAX_BYTES + 1}|endless) is over ${AGENT_HTTP_BODY_MAX_BYTES / 1024} KiB$`));
    await assert.rejects(plainAnswer(`/bytes/${AGENT_HTTP_BODY_MAX_BYTES + 1}`), over);
    await assert.rejects(plainAnswer('/endless'), over);
  });

  test(`an ACME directory is read up to ${ACME_DIRECTORY_MAX_BYTES} bytes; one more, or an endless one, is refused`, async () => {
    const base = `https://127.0.0.1:${address.port}`;
    assert.equal(await termsOfService(`${base}/directory/${ACME_DIRECTORY_MAX_BYTES}`), TERMS);
    await assert.rejects(termsOfService(`${base}/directory/${ACME_DIRECTORY_MAX_BYTES + 1}`), refused('ACME_DIRECTORY', new RegExp(`: more than ${ACME_DIRECTORY_MAX_BYTES} bytes$`)));
    await assert.rejects(termsOfService(`${base}/endless`), refused('ACME_DIRECTORY', new RegExp(`: more than ${ACME_DIRECTORY_MAX_BYTES} bytes$`)));
  });
});
