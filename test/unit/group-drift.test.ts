import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AGENT_FEATURES, type ApiStatus, type StatusResult } from '@plumb/shared';
import { groupApis } from '@plumb/controller/commands/group-ops';
import { copyMark } from '@plumb/controller/commands/group-sync';
import { checkSpareAuto, groupText, nextGeneration, rollbackPlan, topGeneration } from '@plumb/controller/commands/group';
import { GroupGenerations } from '@plumb/controller/local/group-generations';
import type { DropletStatus } from '@plumb/controller/commands/status';
import type { KnownDroplet } from '@plumb/controller/local/droplets-state';
import { releaseDigest } from '@plumb/agent/bundle/delta';

/** Which member of a group runs the group's current release, from the statuses their agents send. */

const member = (id: number): KnownDroplet => ({ name: `web-${id}`, id, uuid: '00000000-0000-4000-8000-000000000000', ipv4: `10.0.0.${id}`, agentPort: 8731, fingerprint: 'a'.repeat(64), region: 'sfo3', size: 's', createdAt: '' });
type Mark = ApiStatus['group'];
const api = (release: string, digest: string | null, deployedAt: string, group: Mark = null): ApiStatus => ({ name: 'sum', path: '/sum', release, state: 'active', workers: [], draining: [], forwarded: false, deployedAt, secrets: [], digest, group, spare: null, sparePolicy: null, spareWhy: null });
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
    await generations.claim('web', 'sum', () => ({ generation: 6 }));
    await generations.claim('web', 'sum', () => ({ generation: 4 }));
    assert.equal(await GroupGenerations.in(dir).highest('web', 'sum'), 6, 'raised, never lowered, and kept on disk');
    const next = await generations.claim('web', 'sum', (recorded) => nextGeneration('web', 'sum', [a, b, c], statuses, { skipUnreachable: true, recorded }));
    assert.equal(next.generation, 7);
    assert.deepEqual(next.unreachable.map((d) => d.name), ['web-3']);
    await assert.rejects(generations.claim('web', 'sum', (recorded) => nextGeneration('web', 'sum', [a, b, c], statuses, { skipUnreachable: false, recorded })), /could not be asked/);
    assert.equal(await generations.highest('web', 'sum'), 7, 'a refused deploy records nothing');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // Every member answers: one more than the highest mark, whatever this controller recorded.
  assert.equal(nextGeneration('web', 'sum', [a, b], statuses.slice(0, 2), { skipUnreachable: false, recorded: 2 }).generation, 6);
});

test('group generation: two group deploys numbered at once from one controller get two generations, as two plumb processes would', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'plumb-gen-'));
  try {
    // Each reads what was given (3), as the members' marks say: without the lock each would take 4.
    await GroupGenerations.in(dir).claim('web', 'sum', () => ({ generation: 3 }));
    const deploy = () => GroupGenerations.in(dir).claim('web', 'sum', (recorded) => ({ generation: Math.max(3, recorded) + 1 }));
    const taken = await Promise.all([deploy(), deploy(), deploy()]);
    assert.deepEqual(taken.map((t) => t.generation).sort(), [4, 5, 6]);
    assert.equal(await GroupGenerations.in(dir).highest('web', 'sum'), 6);
    // A lock held too long (another plumb stuck numbering): a clear refusal after the bounded wait, nothing recorded.
    await writeFile(path.join(dir, 'group-generations.json.lock'), String(process.ppid));
    await assert.rejects(new GroupGenerations(path.join(dir, 'group-generations.json'), 50).claim('web', 'sum', () => ({ generation: 9 })), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, 'STATE_LOCKED');
      assert.match(err.message, new RegExp(`pid ${process.ppid}\\b.*group-generations\\.json\\.lock`));
      return true;
    });
    assert.equal(await GroupGenerations.in(dir).highest('web', 'sum'), 6);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('group rollback plan: a member that cannot be asked is skipped and said so, not counted as untouched; a late joiner is caught up; with none that answers holding the deploy, nothing is rolled back', () => {
  const [a, b, c, d] = [member(1), member(2), member(3), member(4)];
  const off = { droplet: c.name, address: c.ipv4, error: 'connect ETIMEDOUT', code: 'AGENT_UNREACHABLE' as const };
  const statuses = [
    serving(a, [api('r1', NEW, '', deployed(5, 'r0', 'r1'))]),
    serving(b, [api('q1', NEW, '', deployed(5, 'q0', 'q1'))]),
    off,
    // Joined after that deploy: its copy carries the mark, with nothing before it.
    serving(d, [api('s1', NEW, '', deployed(5, null, 's1'))]),
  ];
  const plan = rollbackPlan('web', 'sum', [a, b, c, d], statuses);
  assert.equal(plan.generation, 5);
  assert.deepEqual(plan.steps.map((s) => [s.droplet.name, s.act, s.act === 'rollback' ? s.to : s.act === 'skip' ? s.why : null]), [
    ['web-1', 'rollback', 'r0'],
    ['web-2', 'rollback', 'q0'],
    ['web-3', 'skip', 'connect ETIMEDOUT'],
    ['web-4', 'catch-up', null],
  ]);
  // The last deploy reached only the member that is off (it failed on the next one, since rolled back): the others hold nothing to undo.
  const elsewhere = [serving(a, [api('r0', OLD, '', rolledBack(4, 'r1', 'r0'))]), off];
  assert.throws(() => rollbackPlan('web', 'sum', [a, c], elsewhere), (err: Error & { code?: string; hint?: string }) => {
    assert.equal(err.code, 'GROUP_MEMBER_UNREACHABLE');
    assert.match(err.message, /web-3 \(connect ETIMEDOUT\) could not be asked; nothing was rolled back/);
    assert.match(err.hint ?? '', /once it is back, run `plumb rollback sum --group web` again/);
    return true;
  });
  // The last deploy this controller numbered (6) reached the member that is off, then failed before the others: they still hold 5, which is not to be undone.
  assert.throws(() => rollbackPlan('web', 'sum', [a, b, c], statuses.slice(0, 3), 6), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'GROUP_MEMBER_UNREACHABLE');
    assert.match(err.message, /last deploy of sum \(generation 6\) may have reached only web-3 \(connect ETIMEDOUT\).*nothing was rolled back/);
    return true;
  });
  // With every member answering, what this controller recorded does not matter: the marks say it.
  assert.equal(rollbackPlan('web', 'sum', [a, b], statuses.slice(0, 2), 6).generation, 5);
  assert.throws(() => rollbackPlan('web', 'sum', [c], [off]), /no droplet of group web could be asked/);
  // Every member answers and the deploy was undone: as before, nothing to undo.
  assert.throws(() => rollbackPlan('web', 'sum', [a], [serving(a, [api('r0', OLD, '', rolledBack(5, 'r1', 'r0'))])]), (err: Error & { code?: string }) => err.code === 'GROUP_NO_DEPLOY');
});

test('group rollback text: a skipped member says it could not be asked and what to run once it is back', () => {
  const text = groupText(
    {
      name: 'sum',
      group: 'web',
      ok: true,
      tookMs: 4200,
      droplets: [
        { droplet: 'web-1', id: 1, outcome: 'updated', from: 'r1', release: 'r0' },
        { droplet: 'web-3', id: 3, outcome: 'skipped', from: null, release: null, error: { code: 'AGENT_UNREACHABLE', message: 'connect ETIMEDOUT', log: [] } },
      ],
    },
    'rolled back',
  );
  assert.match(text, /^rolled back sum on group web in 4\.2 s, except web-3 \(could not be asked\): it may still run what that deploy put there$/m);
  assert.match(text, /^ {2}web-3: SKIPPED, could not be asked \(connect ETIMEDOUT\); once it is back, `plumb group sync web` gives it the release the others went back to$/m);
  assert.doesNotMatch(text, /untouched/);
});

test("group sync: a copy carries its source's mark, a rollback's as a rollback (so a late joiner caught up by rollback --group has nothing left to undo); a source changed by hand gives none", () => {
  assert.deepEqual(copyMark(rolledBack(5, 'r1', 'r0')), { name: 'web', generation: 5, kind: 'rollback' });
  assert.deepEqual(copyMark(deployed(6, 'r0', 'r2')), { name: 'web', generation: 6, kind: 'deploy' });
  assert.equal(copyMark(null), undefined);
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

test('group deploy --spare auto: a member whose agent predates auto is refused before the first wave, naming every such member; unreachable members are left to the generation check', () => {
  const [a, b, c, d] = [1, 2, 3, 4].map(member) as [KnownDroplet, KnownDroplet, KnownDroplet, KnownDroplet];
  const agent = (dr: KnownDroplet, features: string[]): DropletStatus => ({ droplet: dr.name, address: dr.ipv4, status: { apis: [], hello: { features } } as unknown as StatusResult });
  const withAuto = [AGENT_FEATURES.deltaUpload, AGENT_FEATURES.spareAuto];
  const statuses = [agent(a, withAuto), agent(b, [AGENT_FEATURES.deltaUpload]), agent(c, withAuto), agent(d, [])];
  assert.throws(() => checkSpareAuto('auto', [a, b, c, d], statuses), (err: Error & { code?: string; hint?: string }) => {
    assert.equal(err.code, 'AGENT_OUTDATED');
    assert.equal(err.message, 'the agents on web-2, web-4 are too old for --spare auto (they know --spare and --no-spare); nothing was deployed');
    assert.equal(err.hint, 'run `plumb upgrade --droplet web-2`, `plumb upgrade --droplet web-4`, or choose --spare or --no-spare');
    return true;
  });
  // --spare, --no-spare, or no flag: an older agent deploys as it did.
  for (const spare of [true, false, undefined]) checkSpareAuto(spare, [a, b, c, d], statuses);
  // Every member new, or the old one unreachable (no status): nothing to refuse here.
  checkSpareAuto('auto', [a, c], [statuses[0]!, statuses[2]!]);
  checkSpareAuto('auto', [a, b], [statuses[0]!, { droplet: b.name, address: b.ipv4, error: 'no answer' }]);
});
