import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { createApiClient } from 'dots-wrapper';
import type { Lab } from '../lab/lab.js';
import { run } from '../lab/host.js';
import { sleep } from '../lab/host.js';

export type DoClient = ReturnType<typeof createApiClient>;
export type Droplet = Awaited<ReturnType<DoClient['droplet']['getDroplet']>>['data']['droplet'];

export function clientFor(lab: Lab): DoClient {
  return createApiClient({ token: lab.token, endpoint: lab.apiUrl });
}

/** Polls the droplet as plumb will: until `active` with a public v4 address listed. */
export async function waitActive(api: DoClient, id: number, timeoutMs = 180_000): Promise<{ droplet: Droplet; address: string }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { droplet } = (await api.droplet.getDroplet({ droplet_id: id })).data;
    const address = droplet.networks.v4.find((n) => n.type === 'public')?.ip_address;
    if (droplet.status === 'active' && address) return { droplet, address };
    await sleep(500);
  }
  throw new Error(`droplet ${id} did not become active within ${timeoutMs} ms`);
}

export async function waitAction(api: DoClient, actionId: number, timeoutMs = 180_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { action } = (await api.action.getAction({ action_id: actionId })).data;
    if (action.status !== 'in-progress') return action.status;
    await sleep(500);
  }
  throw new Error(`action ${actionId} still in progress after ${timeoutMs} ms`);
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One GET with a short timeout; rejects on a connection failure (refused, filtered, reset). */
export function httpGet(url: string, timeoutMs = 3000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time (no keep-alive), so a firewall change is seen at once.
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      // A connection cut after the headers (a worker stopped mid-answer): node then ends the answer
      // with neither 'end' nor, without a listener, 'error'; the promise would wait for ever.
      res.on('close', () => {
        if (!res.complete) reject(new Error(`GET ${url}: the connection closed before the whole answer`));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/**
 * `read()` again every 250 ms until `done` holds for what it returns, for at most `timeoutMs`;
 * returns the last value read either way, for the assertion that follows to judge. For what an
 * agent does after it answered: old releases go behind a deploy's answer (ops/prune.ts), so a
 * test that counts them right after a deploy waits for the prune instead of racing it.
 */
export async function settled<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() >= deadline) return value;
    await sleep(250);
  }
}

/** What the lab left on the host that mentions this droplet's index or directory. */
export async function leftovers(index: number, dir: string): Promise<string[]> {
  const found: string[] = [];
  if ((await run('ip', ['netns', 'list'])).split('\n').some((l) => l.split(' ')[0] === `plumb-lab-${index}`)) found.push('netns');
  if (new RegExp(`^\\d+: plv${index}[@:]`, 'm').test(await run('ip', ['-o', 'link', 'show']))) found.push('veth');
  for (const table of ['nat', 'filter']) {
    if (new RegExp(`plumb-lab:${index}"?\\s`).test(await run('iptables', ['-w', '-t', table, '-S']))) found.push(`iptables ${table}`);
  }
  if ((await readFile('/proc/self/mounts', 'utf8')).includes(dir)) found.push('mount');
  if (await readFile(`${dir}/console.log`).then(() => true, () => false)) found.push('files');
  if ((await run('ps', ['-eo', 'args'])).split('\n').some((l) => l.startsWith('systemd-nspawn') && l.includes(dir))) found.push('nspawn');
  return found;
}
