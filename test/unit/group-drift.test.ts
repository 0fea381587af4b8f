import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { ApiStatus, StatusResult } from '@plumb/shared';
import { groupApis } from '@plumb/controller/commands/group-ops';
import { nextGeneration, topGeneration } from '@plumb/controller/commands/group';
import { GroupGenerations } from '@plumb/controller/local/group-generations';
import type { DropletStatus } from '@plumb/controller/commands/status';
import type { KnownDroplet } from '@plumb/controller/local/droplets-state';
import { releaseDigest } from '@plumb/agent/bundle/delta';

/** Which member of a group runs the group's current release, from the statuses their agents send. */

const member = (id: number): KnownDroplet => ({ name: `web-${id}`, id, uuid: '00000000-0000-4000-8000-000000000000', ipv4: `10.0.0.${id}`, agentPort: 8731, fingerprint: 'a'.repeat(64), region: 'sfo3', size: 's', createdAt: '' });
type Mark = ApiStatus['group'];
const api = (release: string, digest: string | null, deployedAt: string, group: Mark = null): ApiStatus => ({ name: 'sum', path: '/sum', release, state: 'active', workers: [], draining: [], forwarded: false, deployedAt, secrets: [], digest, group, spare: null });
const serving = (d: KnownDroplet, apis: ApiStatus[]): DropletStatus => ({ droplet: d.name, address: d.ipv4, status: { apis } as unknown as StatusResult });
const NEW = 'b'.repeat(64);
const OLD = 'c'.repeat(64);
const deployed = (generation: number, from: string | null, to: string): Mark => ({ name: 'web', generation, kind: 'deploy', from, to });
const rolledBack = (generation: number, from: string, to: string): Mark => ({ name: 'web', generation, kind: 'rollback', from, to });

test('group drift: the newest group generation is current whatever the agents\' clocks say; other content drifts, no API is missing, no answer is unknown', () => {
  const [a, b, c, d, e] = [1, 2, 3, 4, 5].map(member) as [KnownDroplet, KnownDroplet, KnownDroplet, KnownDroplet, KnownDroplet];
  const [sum] = groupApis('web',
    [a, b, c, d, e],
    [
      // Its clock is a day behind: it still holds the newest group deploy.
      serving(a, [api('20261127T100000Z-aaaa', NEW, '2026-11-27T10:00:05Z', deployed(2, '20261126T000000Z-aaa0', '20261127T100000Z-aaaa'))]),
      // Same code, its own release id.
      serving(b, [api('20261128T100010Z-bbbb', NEW, '2026-11-28T10:00:15Z', deployed(2, '20261127T000000Z-bbb0', '20261128T100010Z-bbbb'))]),
      // Off during that deploy, and its clock runs a day ahead: the release before.
      serving(c, [api('20261129T090000Z-cccc', OLD, '2026-11-29T09:00:05Z', deployed(1, null, '20261129T090000Z-cccc'))]),
      serving(d, []),
      { droplet: e.name, address: e.ipv4, error: 'unreachable', code: 'AGENT_UNREACHABLE' },
    ],
  );
  assert.ok(sum);
  assert.equal(sum.source.droplet, 'web-1', 'a tie goes to the oldest member');
  assert.equal(sum.source.mark?.generation, 2);
  assert.deepEqual(sum.members.map((m) => [m.droplet, m.state]), [['web-1', 'current'], ['web-2', 'current'], ['web-3', 'drift'], ['web-4', 'missing'], ['web-5', 'unknown']]);
});

test('group drift: a group rollback makes the older code current again, over the deploy mark of the generation it undid', () => {
  const [a, b] = [member(1), member(2)];
  // The rollback reached a, not yet b.
  const [sum] = groupApis('web', [a, b], [
    serving(a, [api('20261127T090000Z-aaaa', OLD, '2026-11-27T11:00:00Z', rolledBack(3, '20261128T100000Z-aaab', '20261127T090000Z-aaaa'))]),
    serving(b, [api('20261128T100000Z-bbbb', NEW, '2026-11-28T10:00:00Z', deployed(3, '20261127T090000Z-bbba', '20261128T100000Z-bbbb'))]),
  ]);
  assert.deepEqual(sum?.members.map((m) => m.state), ['current', 'drift']);
});

test('group drift: a member deployed by hand since the group deploy no longer speaks for the group', () => {
  const [a, b] = [member(1), member(2)];
  const [sum] = groupApis('web', [a, b], [
    serving(a, [api('20261128T120000Z-aaac', OLD, '2026-11-28T12:00:00Z', deployed(4, '20261127T090000Z-aaaa', '20261128T100000Z-aaab'))]),
    serving(b, [api('20261128T100000Z-bbbb', NEW, '2026-11-28T10:00:00Z', deployed(4, '20261127T090000Z-bbba', '20261128T100000Z-bbbb'))]),
  ]);
  assert.equal(sum?.source.droplet, 'web-2');
  assert.deepEqual(sum?.members.map((m) => m.state), ['drift', 'current']);
});

test('group drift: agents from before group marks fall back to the switch time', () => {
  const [a, b] = [member(1), member(2)];
  const [sum] = groupApis('web', [a, b], [serving(a, [api('20261127T090000Z-aaaa', OLD, '2026-11-28T11:00:00Z')]), serving(b, [api('20261128T100000Z-bbbb', NEW, '2026-11-28T10:00:00Z')])]);
  assert.deepEqual(sum?.members.map((m) => m.state), ['current', 'drift']);
});

test('group drift: agents from before digests are compared by nothing but the source itself', () => {
  const [a, b] = [member(1), member(2)];
  const [sum] = groupApis('web', [a, b], [serving(a, [api('20261128T100000Z-aaaa', null, '2026-11-28T10:00:00Z')]), serving(b, [api('20261128T100000Z-aaaa', null, '2026-11-28T09:00:00Z')])]);
  assert.deepEqual(sum?.members.map((m) => m.state), ['current', 'drift']);
});

test('group generation: the highest mark of this group any member holds; another group\'s marks do not count', () => {
  assert.equal(topGeneration('web', [undefined, api('r', NEW, '', deployed(3, null, 'r')), api('r', NEW, '', { name: 'other', generation: 9, kind: 'deploy', from: null, to: 'r' })]), 3);
  assert.equal(topGeneration('web', [undefined, api('r', NEW, '')]), 0);
});

test('group generation: a member that cannot be asked stops a group deploy, as it may hold a higher mark than the others; told to go on, the deploy takes one more than any mark seen or given here', async () => {
  const [a, b, c] = [member(1), member(2), member(3)];
  // c took generation 6 alone (that deploy failed on the next member) and is now off: the others hold 5.
  const statuses = [serving(a, [api('r', NEW, '', deployed(5, 'q', 'r'))]), serving(b, [api('r', NEW, '', deployed(5, 'q', 'r'))]), { droplet: c.name, address: c.ipv4, error: 'connect ECONNREFUSED', code: 'AGENT_UNREACHABLE' as const }];
  assert.throws(() => nextGeneration('web', 'sum', [a, b, c], statuses, { skipUnreachable: false, recorded: 0 }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'GROUP_MEMBER_UNREACHABLE');
    assert.match(err.message, /web-3 \(connect ECONNREFUSED\).*nothing was deployed/);
    return true;
  });
  // This controller gave 6: the next is 7, not a second 6 beside c's.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-gen-'));
  try {
    const generations = GroupGenerations.in(dir);
    assert.equal(await generations.highest('web', 'sum'), 0);
    await generations.raise('web', 'sum', 6);
    await generations.raise('web', 'sum', 4);
    const recorded = await GroupGenerations.in(dir).highest('web', 'sum');
    assert.equal(recorded, 6, 'raised, never lowered, and kept on disk');
    const next = nextGeneration('web', 'sum', [a, b, c], statuses, { skipUnreachable: true, recorded });
    assert.equal(next.generation, 7);
    assert.deepEqual(next.unreachable.map((d) => d.name), ['web-3']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // Every member answers: one more than the highest mark, whatever this controller recorded.
  assert.equal(nextGeneration('web', 'sum', [a, b], statuses.slice(0, 2), { skipUnreachable: false, recorded: 2 }).generation, 6);
});

test("release digest: the same files give the same digest in any order; a changed byte or mode bit changes it", () => {
  const f = (path: string, sha: string, executable = false) => ({ path, sha256: sha.repeat(64), size: 1, executable });
  const files = [f('plumber.R', 'a'), f('R/util.R', 'b')];
  assert.equal(releaseDigest(files), releaseDigest([...files].reverse()));
  assert.notEqual(releaseDigest(files), releaseDigest([f('plumber.R', 'a'), f('R/util.R', 'c')]));
  assert.notEqual(releaseDigest(files), releaseDigest([f('plumber.R', 'a', true), f('R/util.R', 'b')]));
  assert.notEqual(releaseDigest(files), releaseDigest([f('plumber.R', 'a'), f('R/other.R', 'b')]));
  // --env changes what the code does: it counts, in any order; no env is the digest of the files alone.
  assert.equal(releaseDigest(files, {}), releaseDigest(files));
  assert.notEqual(releaseDigest(files, { MODE: 'fast' }), releaseDigest(files));
  assert.notEqual(releaseDigest(files, { MODE: 'fast' }), releaseDigest(files, { MODE: 'slow' }));
  assert.equal(releaseDigest(files, { A: '1', B: '2' }), releaseDigest(files, { B: '2', A: '1' }));
});
