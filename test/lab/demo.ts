#!/usr/bin/env node
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { PLUMB_CLI } from '../e2e/plumb.js';
import { startLab } from './lab.js';

/**
 * The README's first command: the whole story on this machine, with the real `plumb` binary
 * against the lab — provision with the example, deploy an API, call it, read its log, look at the
 * status, turn on HTTPS. `--keep` leaves everything up until Ctrl-C, to try more by hand.
 */
const keep = process.argv.includes('--keep');
const DOMAIN = 'demo.plumb.test';

const lab = await startLab({ acme: true, packageServer: false, log: (line) => console.log(`  (lab) ${line}`) });
const acme = lab.acme!;
const configHome = await mkdtemp(path.join(os.tmpdir(), 'plumb-demo-'));
const env = {
  ...process.env,
  DIGITALOCEAN_ACCESS_TOKEN: lab.token,
  PLUMB_DIGITALOCEAN_API_URL: lab.apiUrl,
  PLUMB_ACME_SERVER: acme.directoryUrl,
  PLUMB_DNS_SERVER: acme.dnsServer,
  NODE_EXTRA_CA_CERTS: acme.listenerCaPath,
  XDG_CONFIG_HOME: configHome,
};

/** Runs `plumb ARGS` with its output on this terminal, as a person would see it. */
function plumb(...args: string[]): Promise<void> {
  console.log(`\n$ plumb ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PLUMB_CLI, ...args], { env, stdio: 'inherit' });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`plumb ${args[0]} exited ${code}`))));
  });
}

function get(url: string, opts: https.RequestOptions = {}): Promise<string> {
  console.log(`\n$ curl ${url}`);
  const client = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    client
      .get(url, opts, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          console.log(body.trim());
          resolve(body);
        });
      })
      .on('error', reject);
  });
}

const stop = async () => {
  console.log('\ntearing the lab down');
  await lab.stop();
};
process.once('SIGINT', () => void stop().then(() => process.exit(130)));

try {
  await plumb('provision', '--name', 'demo', '--example');
  const droplets = JSON.parse(await readFile(path.join(configHome, 'plumb/droplets.json'), 'utf8')) as { droplets: Array<{ ipv4: string }> };
  const address = droplets.droplets[0]!.ipv4;
  await get(`http://${address}/`);

  const api = await mkdtemp(path.join(os.tmpdir(), 'my-api-'));
  await writeFile(
    path.join(api, 'plumber.R'),
    ['#* @get /hello', 'function(name = "world") {', '  message("greeting ", name)', '  list(greeting = paste0("hello, ", name))', '}', '', '#* @get /add', 'function(a, b) as.numeric(a) + as.numeric(b)', ''].join('\n'),
  );
  await plumb('deploy', api, '--name', 'hello-api', '--workers', '2');
  await get(`http://${address}/hello-api/hello?name=R`);
  await get(`http://${address}/hello-api/add?a=1&b=2`);
  await plumb('logs', 'hello-api', '-n', '3');
  await plumb('status');

  await acme.resolve(DOMAIN, address);
  await plumb('https', '--domain', DOMAIN, '--email', 'demo@plumb.test', '--agree-tos');
  const ca = await acme.issuingRootPem();
  // The demo domain exists only in the lab's DNS; point this one request at the droplet.
  const lookup = ((_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) => (opts.all ? cb(null, [{ address, family: 4 }]) : cb(null, address, 4))) as unknown as https.RequestOptions['lookup'];
  await get(`https://${DOMAIN}/hello-api/hello?name=HTTPS`, { ca, lookup });

  if (keep) {
    console.log(`\nThe lab stays up. In another shell (as root):`);
    for (const key of ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL', 'XDG_CONFIG_HOME'] as const) console.log(`  export ${key}=${env[key]}`);
    console.log(`  node ${PLUMB_CLI} status\nCtrl-C here ends the lab.`);
    await new Promise(() => {});
  }
} finally {
  if (!keep) await stop();
}
