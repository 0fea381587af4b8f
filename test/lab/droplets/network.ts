import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LabError } from '../errors.js';
import { METADATA_ADDRESS } from '../metadata.js';
import { run, tryRun } from '../host.js';
import { netClaimsDir } from '../paths.js';

/**
 * Each droplet lives in its own network namespace `plumb-lab-N` with `eth0` = 10.213.N.2/24,
 * joined by a veth pair to the host end `plvN` = 10.213.N.1, and NATed out so apt and npm reach
 * their registries. N is claimed atomically (mkdir) so several labs on one host never collide.
 */

export const LAB_NET = '10.213.0.0/16';
/** The host's address for lab services (ACME, package server), reachable from every droplet. */
export const LAB_HOST_ADDRESS = '10.213.0.1';
const FIRST_INDEX = 1;
const LAST_INDEX = 250;
export const RULE_COMMENT_PREFIX = 'plumb-lab';

export interface DropletNet {
  index: number;
  netns: string;
  hostIf: string;
  address: string;
  gateway: string;
  netmask: string;
}

export function netFor(index: number): DropletNet {
  return {
    index,
    netns: `plumb-lab-${index}`,
    hostIf: `plv${index}`,
    address: `10.213.${index}.2`,
    gateway: `10.213.${index}.1`,
    netmask: '255.255.255.0',
  };
}

/** Claims a free index for `owner` (a droplet record key); throws when the lab's 250 are taken. */
export async function claimIndex(owner: string): Promise<number> {
  await mkdir(netClaimsDir(), { recursive: true });
  for (let index = FIRST_INDEX; index <= LAST_INDEX; index++) {
    const claim = path.join(netClaimsDir(), String(index));
    try {
      await mkdir(claim);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    await writeFile(path.join(claim, 'owner'), owner);
    return index;
  }
  throw new LabError('the lab has no free droplet address left (250 in use)', 'run `npm run lab -- down` to remove old droplets');
}

export async function releaseIndex(index: number): Promise<void> {
  await rm(path.join(netClaimsDir(), String(index)), { recursive: true, force: true });
}

export async function claimOwner(index: number): Promise<string | undefined> {
  return readFile(path.join(netClaimsDir(), String(index), 'owner'), 'utf8').catch(() => undefined);
}

const iptables = (op: '-C' | '-I' | '-D', rule: readonly string[]) => ['-w', ...(rule[0] === 'nat' ? ['-t', 'nat'] : []), op, ...rule.slice(1)];

/**
 * NAT out and forwarding; `offline` adds (inserted last, so first in the chain) a refusal of
 * everything beyond the lab's network: a droplet whose mirrors are unreachable, answered at once
 * (ICMP unreachable) as a dead route or a firewalled mirror would be. `metadataPort`: the
 * droplet's requests to DigitalOcean's metadata address go to the lab's metadata server there.
 */
function natRules(net: DropletNet, offline = false, metadataPort?: number): string[][] {
  const comment = ['-m', 'comment', '--comment', `${RULE_COMMENT_PREFIX}:${net.index}`];
  const subnet = `10.213.${net.index}.0/24`;
  return [
    ['nat', 'POSTROUTING', '-s', subnet, '!', '-d', LAB_NET, '-j', 'MASQUERADE', ...comment],
    ['filter', 'FORWARD', '-i', net.hostIf, '-j', 'ACCEPT', ...comment],
    ['filter', 'FORWARD', '-o', net.hostIf, '-j', 'ACCEPT', ...comment],
    ...(offline ? [['filter', 'FORWARD', '-i', net.hostIf, '!', '-d', LAB_NET, '-j', 'REJECT', ...comment]] : []),
    ...(metadataPort === undefined ? [] : [['nat', 'PREROUTING', '-i', net.hostIf, '-d', `${METADATA_ADDRESS}/32`, '-p', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', `${LAB_HOST_ADDRESS}:${metadataPort}`, ...comment]]),
  ];
}

/** Makes the namespace, the veth pair with eth0 inside, the routes and the NAT rules (`offline`: no way out of the lab). */
export async function createNet(net: DropletNet, offline = false, metadataPort?: number): Promise<void> {
  await ensureHostSide();
  await run('ip', ['netns', 'add', net.netns]);
  await run('ip', ['link', 'add', net.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', net.netns]);
  await run('ip', ['addr', 'add', `${net.gateway}/24`, 'dev', net.hostIf]);
  await run('ip', ['link', 'set', net.hostIf, 'up']);
  const inside = (...args: string[]) => run('ip', ['-n', net.netns, ...args]);
  await inside('link', 'set', 'lo', 'up');
  await inside('addr', 'add', `${net.address}/24`, 'dev', 'eth0');
  await inside('link', 'set', 'eth0', 'up');
  await inside('route', 'add', 'default', 'via', net.gateway);
  for (const rule of natRules(net, offline, metadataPort)) await run('iptables', iptables('-I', rule));
}

/** Removes what createNet made; each step tolerates its target being gone already. */
export async function removeNet(net: DropletNet): Promise<void> {
  await removeRules((comment) => comment === `${RULE_COMMENT_PREFIX}:${net.index}`);
  await tryRun('ip', ['link', 'del', net.hostIf]);
  await tryRun('ip', ['netns', 'del', net.netns]);
}

/** Forwarding on, and the lab services' address on the host's loopback (idempotent). */
export async function ensureHostSide(): Promise<void> {
  await run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  await run('ip', ['addr', 'replace', `${LAB_HOST_ADDRESS}/32`, 'dev', 'lo']);
}

/** Every lab-made namespace, host interface and iptables rule on this host, for `lab down`. */
export async function sweepNet(): Promise<string[]> {
  const removed: string[] = [];
  const namespaces = (await run('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith('plumb-lab-'));
  for (const ns of namespaces) if (await tryRun('ip', ['netns', 'del', ns])) removed.push(`netns ${ns}`);
  const links = (await run('ip', ['-o', 'link', 'show'])).split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '').filter((n) => /^plv\d+$/.test(n));
  for (const link of links) if (await tryRun('ip', ['link', 'del', link])) removed.push(`link ${link}`);
  removed.push(...(await removeRules((comment) => comment.startsWith(`${RULE_COMMENT_PREFIX}:`))));
  await tryRun('ip', ['addr', 'del', `${LAB_HOST_ADDRESS}/32`, 'dev', 'lo']);
  return removed;
}

/** Deletes the lab's iptables rules whose comment `matches` (by comment: a rule's other words, such as a metadata port, need not be known). */
async function removeRules(matches: (comment: string) => boolean): Promise<string[]> {
  const removed: string[] = [];
  for (const table of ['nat', 'filter']) {
    const rules = (await run('iptables', ['-w', '-t', table, '-S'])).split('\n').filter((r) => r.startsWith('-A ') && matches(/--comment "?([^" ]*)"?/.exec(r)?.[1] ?? ''));
    for (const rule of rules) {
      const args = splitRule(rule.slice(3));
      if (await tryRun('iptables', ['-w', '-t', table, '-D', ...args])) removed.push(`iptables ${table} ${rule}`);
    }
  }
  return removed;
}

/** iptables -S quotes nothing our rules use except the comment, which has no spaces. */
function splitRule(rule: string): string[] {
  return rule.split(' ').map((part) => part.replace(/^"|"$/g, ''));
}
