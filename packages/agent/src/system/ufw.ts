import { readFile, stat } from 'node:fs/promises';
import { execa } from 'execa';
import { PlumbError } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';

/**
 * ufw, with argument arrays. Its rules (what `ufw allow` adds, v4 and v6) live in two files, so
 * their bytes are the firewall's state: a change that has to be undone is checked against them.
 */
const RULE_FILES = ['/etc/ufw/user.rules', '/etc/ufw/user6.rules'] as const;

export type UfwSnapshot = ReadonlyMap<string, string | undefined>;

export async function snapshot(): Promise<UfwSnapshot> {
  return new Map(await Promise.all(RULE_FILES.map(async (file) => [file, await readFile(file, 'utf8').catch(() => undefined)] as const)));
}

function same(a: UfwSnapshot, b: UfwSnapshot): boolean {
  return RULE_FILES.every((file) => a.get(file) === b.get(file));
}

async function ufw(...args: string[]): Promise<void> {
  const result = await execa('ufw', args, { reject: false, timeout: 60_000 });
  if (result.exitCode !== 0) {
    const reason = (result.stderr || result.stdout || result.shortMessage || '').trim().split('\n').slice(-2).join(' ');
    throw new PlumbError('FIREWALL', `ufw ${args.join(' ')} failed: ${reason}`);
  }
}

/** Allows `rule` (e.g. `443/tcp`) in; true when that changed the rules, false when it was allowed already. */
export async function allow(rule: string): Promise<boolean> {
  const before = await snapshot();
  await ufw('allow', rule);
  return !same(before, await snapshot());
}

/**
 * Takes back an `allow(rule)`: `ufw delete allow RULE`, and should ufw not have written its files
 * back byte for byte, the files as they were in `before` and a reload of them.
 */
export async function undoAllow(rule: string, before: UfwSnapshot): Promise<void> {
  await ufw('delete', 'allow', rule);
  if (same(before, await snapshot())) return;
  for (const [file, content] of before) {
    if (content === undefined) continue;
    const mode = (await stat(file).catch(() => undefined))?.mode ?? 0o640;
    await writeFileAtomic(file, content, mode & 0o777);
  }
  await ufw('reload');
}

/** Takes `rule` out; true when that changed the rules, false when it was not allowed. */
export async function deny(rule: string): Promise<boolean> {
  const before = await snapshot();
  await ufw('delete', 'allow', rule);
  return !same(before, await snapshot());
}

/** The rules `ufw allow` added (e.g. `80/tcp`), in ufw's order, v4 and v6 alike once. */
export async function allowed(): Promise<string[]> {
  const result = await execa('ufw', ['show', 'added'], { reject: false, timeout: 60_000 });
  if (result.exitCode !== 0) throw new PlumbError('FIREWALL', `ufw show added failed: ${result.stderr.trim()}`);
  const rules = result.stdout.split('\n').flatMap((line) => /^ufw allow (\S+)$/.exec(line.trim())?.slice(1) ?? []);
  return [...new Set(rules)];
}

/**
 * True when ufw is on (`ufw enable`, kept in ufw.conf) but its chains are gone from the kernel:
 * `nft flush ruleset` (or `iptables -F -X`) takes them with everything else, leaving every port
 * open while ufw.conf still says enabled. `iptables -S` of one chain costs one short process.
 */
export async function lost(): Promise<boolean> {
  const conf = await readFile('/etc/ufw/ufw.conf', 'utf8').catch(() => '');
  if (!/^ENABLED=yes\s*$/m.test(conf)) return false;
  const chain = await execa('iptables', ['-w', '-S', 'ufw-user-input'], { reject: false, timeout: 30_000 });
  return chain.exitCode !== 0;
}

/** Loads ufw's rules again from its files (v4 and v6), as `ufw reload` does after a hand edit. */
export async function reload(): Promise<void> {
  await ufw('reload');
}
