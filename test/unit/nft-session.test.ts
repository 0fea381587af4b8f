import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { NftRefused, NftSession, NftSessionLost } from '@plumb/agent/system/nft-session';

/**
 * The agent's `nft -i` session against the real nft, in a network namespace of the test's own
 * (the host's rules are never touched). nft comes with scripts/setup.sh.
 */
const hasNft = await execa('nft', ['--version'], { reject: false }).then((r) => r.exitCode === 0, () => false);
const skip = process.getuid?.() !== 0 ? 'needs root (a network namespace)' : !hasNft ? 'nft is not installed (npm run setup)' : false;

/**
 * A table shaped like the agent's (render/nat.ts: created, deleted and made again in one file; a
 * front port sent on to workers in turn), written out here: the host's nft (Debian 12's 1.0.6)
 * refuses `priority dstnat` on the output hook, which the droplets' 1.1 takes.
 */
const ruleset = (ports: number[]) => `# like /var/lib/plumb/nat.nft
table ip plumb
delete table ip plumb
table ip plumb {
    chain output {
        type nat hook output priority -100; policy accept;
        ip daddr 127.0.0.1 tcp dport 7000 dnat to 127.0.0.1 : numgen inc mod ${ports.length} map { ${ports.map((p, i) => `${i} : ${p}`).join(', ')} } comment "sum"
    }
    chain api_ports {
        meta skuid { 0, 33 } accept comment "the agent, nginx"
        reject with tcp reset
    }
}
`;

describe('the nft session', { skip }, () => {
  const ns = `plumb-nft-test-${process.pid}`;
  let dir: string;
  let session: NftSession;
  const inNs = (args: string[]) => execa('ip', ['netns', 'exec', ns, 'nft', ...args], { reject: false });
  const listed = async () => (await inNs(['list', 'table', 'ip', 'plumb'])).stdout.trim();
  const table = async (name: string, ruleset: string) => {
    const file = path.join(dir, name);
    await writeFile(file, ruleset);
    return file;
  };

  before(async () => {
    await execa('ip', ['netns', 'add', ns]);
    dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-nft-'));
    session = new NftSession(['ip', 'netns', 'exec', ns, 'nft', '-i']);
  });
  after(async () => {
    session?.close();
    await execa('ip', ['netns', 'del', ns], { reject: false });
    await rm(dir, { recursive: true, force: true });
  });

  test('a table loaded through the session is what `nft -f` loads, and its listing is what `nft list` prints', async () => {
    const table1 = ruleset([9000, 9001]);
    const file = await table('a.nft', table1);
    assert.equal(await session.run(`include "${file}"`), '');
    const viaSession = (await session.run('list table ip plumb', { output: true })).trim();
    assert.equal(viaSession, await listed());
    assert.match(viaSession, /dport 7000 dnat to 127\.0\.0\.1 ?: ?numgen inc mod 2 map \{ 0 : 9000, 1 : 9001 \}/);
    assert.ok((await inNs(['-f', file])).exitCode === 0);
    assert.equal(await listed(), viaSession, 'the same file by `nft -f` lists the same');
    // The switch: new workers for sum, in one transaction.
    await session.run(`include "${await table('b.nft', ruleset([9002]))}"`);
    assert.match(await listed(), /dport 7000 dnat to 127\.0\.0\.1 ?: ?numgen inc mod 1 map \{ 0 : 9002 \}/);
  });

  test('a refused command: NftRefused with nft\'s error line, nothing of it applied (one transaction), and the session runs the next command', async () => {
    const before = await listed();
    // Parsed whole, refused where nft checks values (after the delete and the new table were read).
    const bad = `${ruleset([9003])}table ip plumb {\n chain output {\n tcp dport 70000 accept\n }\n}\n`;
    const refused = await session.run(`include "${await table('bad.nft', bad)}"`).catch((err: unknown) => err);
    assert.ok(refused instanceof NftRefused, String(refused));
    assert.match(refused.detail, /bad\.nft:16:\d+-\d+: Error: Service out of range/);
    assert.doesNotMatch(refused.detail, /plumb-sync/, 'the session\'s own marker is not part of the error');
    assert.equal(await listed(), before, 'the table delete and the new table before the bad line were not applied either');
    await session.run(`include "${await table('c.nft', ruleset([9004]))}"`);
    assert.match(await listed(), /map \{ 0 : 9004 \}/);
    assert.ok(session.alive);
  });

  test('after `nft flush ruleset` by another process, the session lists no table and puts it back', async () => {
    assert.equal((await inNs(['flush', 'ruleset'])).exitCode, 0);
    const gone = await session.run('list table ip plumb', { output: true }).catch((err: unknown) => err);
    assert.ok(gone instanceof NftRefused, String(gone));
    await session.run(`include "${await table('d.nft', ruleset([9005]))}"`);
    assert.match(await listed(), /map \{ 0 : 9005 \}/);
  });

  test('commands sent at once run one after the other, each with its own answer', async () => {
    const files = await Promise.all([9006, 9007, 9008].map((port) => table(`e${port}.nft`, ruleset([port]))));
    const answers = await Promise.all([...files.map((f) => session.run(`include "${f}"`)), session.run('list table ip plumb', { output: true }), session.run('list table ip nothing', { output: true }).catch((err: unknown) => err)]);
    assert.match(answers[3] as string, /map \{ 0 : 9008 \}/);
    assert.ok(answers[4] instanceof NftRefused);
  });
});

describe('an nft session that cannot run', () => {
  test('nft missing: NftSessionLost, not a hang', async () => {
    const session = new NftSession(['/nonexistent/nft', '-i']);
    await assert.rejects(session.run('list ruleset'), (err: unknown) => err instanceof NftSessionLost && /could not start/.test(err.message));
    assert.equal(session.alive, false);
  });

  test('an nft without its interactive mode (it exits at once): NftSessionLost with what it said', async () => {
    const session = new NftSession(['sh', '-c', 'echo "nft: interactive CLI not supported in this build" >&2; exit 1']);
    await assert.rejects(session.run('list ruleset'), (err: unknown) => err instanceof NftSessionLost && /exit 1\): nft: interactive CLI not supported/.test(err.message));
  });

  test('an nft that does not answer: NftSessionLost after the timeout, the process stopped, later commands refused at once', async () => {
    const session = new NftSession(['sleep', '60']);
    await assert.rejects(session.run('list ruleset', { timeoutMs: 300 }), (err: unknown) => err instanceof NftSessionLost && /did not answer within 0.3 s/.test(err.message));
    assert.equal(session.alive, false);
    await assert.rejects(session.run('list ruleset'), NftSessionLost);
  });

  test('a command of more than one line is refused before it reaches nft', async () => {
    const session = new NftSession(['sleep', '60']);
    await assert.rejects(session.run('flush ruleset\nlist ruleset'), /one line/);
    session.close();
  });
});
