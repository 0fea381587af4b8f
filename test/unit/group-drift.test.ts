import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApiStatus, StatusResult } from '@plumb/shared';
import { groupApis } from '@plumb/controller/commands/group-ops';
import type { DropletStatus } from '@plumb/controller/commands/status';
import type { KnownDroplet } from '@plumb/controller/local/droplets-state';
import { releaseDigest } from '@plumb/agent/bundle/delta';

/** Which member of a group runs the group's current release, from the statuses their agents send. */

const member = (id: number): KnownDroplet => ({ name: `web-${id}`, id, uuid: '00000000-0000-4000-8000-000000000000', ipv4: `10.0.0.${id}`, agentPort: 8731, fingerprint: 'a'.repeat(64), region: 'sfo3', size: 's', createdAt: '' });
const api = (release: string, digest: string | null, deployedAt: string): ApiStatus => ({ name: 'sum', path: '/sum', release, state: 'active', workers: [], draining: [], forwarded: false, deployedAt, secrets: [], digest });
const serving = (d: KnownDroplet, apis: ApiStatus[]): DropletStatus => ({ droplet: d.name, address: d.ipv4, status: { apis } as unknown as StatusResult });
const NEW = 'b'.repeat(64);
const OLD = 'c'.repeat(64);

test('group drift: the release made live last is current; other content drifts, no API is missing, no answer is unknown', () => {
  const [a, b, c, d, e] = [1, 2, 3, 4, 5].map(member) as [KnownDroplet, KnownDroplet, KnownDroplet, KnownDroplet, KnownDroplet];
  const [sum] = groupApis(
    [a, b, c, d, e],
    [
      serving(a, [api('20261128T100000Z-aaaa', NEW, '2026-11-28T10:00:05Z')]),
      // Same code, its own release id, switched a little later (the group deploy went on to it).
      serving(b, [api('20261128T100010Z-bbbb', NEW, '2026-11-28T10:00:15Z')]),
      // Off during that deploy: the release before.
      serving(c, [api('20261127T090000Z-cccc', OLD, '2026-11-27T09:00:05Z')]),
      serving(d, []),
      { droplet: e.name, address: e.ipv4, error: 'unreachable', code: 'AGENT_UNREACHABLE' },
    ],
  );
  assert.ok(sum);
  assert.equal(sum.source.droplet, 'web-2');
  assert.deepEqual(sum.members.map((m) => [m.droplet, m.state]), [['web-1', 'current'], ['web-2', 'current'], ['web-3', 'drift'], ['web-4', 'missing'], ['web-5', 'unknown']]);
});

test('group drift: a group rollback makes the older code current again (the switch time decides, not the release age)', () => {
  const [a, b] = [member(1), member(2)];
  const [sum] = groupApis([a, b], [serving(a, [api('20261127T090000Z-aaaa', OLD, '2026-11-28T11:00:00Z')]), serving(b, [api('20261128T100000Z-bbbb', NEW, '2026-11-28T10:00:00Z')])]);
  assert.deepEqual(sum?.members.map((m) => m.state), ['current', 'drift']);
});

test('group drift: agents from before digests are compared by nothing but the source itself', () => {
  const [a, b] = [member(1), member(2)];
  const [sum] = groupApis([a, b], [serving(a, [api('20261128T100000Z-aaaa', null, '2026-11-28T10:00:00Z')]), serving(b, [api('20261128T100000Z-aaaa', null, '2026-11-28T09:00:00Z')])]);
  assert.deepEqual(sum?.members.map((m) => m.state), ['current', 'drift']);
});

test("release digest: the same files give the same digest in any order; a changed byte or mode bit changes it", () => {
  const f = (path: string, sha: string, executable = false) => ({ path, sha256: sha.repeat(64), size: 1, executable });
  const files = [f('plumber.R', 'a'), f('R/util.R', 'b')];
  assert.equal(releaseDigest(files), releaseDigest([...files].reverse()));
  assert.notEqual(releaseDigest(files), releaseDigest([f('plumber.R', 'a'), f('R/util.R', 'c')]));
  assert.notEqual(releaseDigest(files), releaseDigest([f('plumber.R', 'a', true), f('R/util.R', 'b')]));
  assert.notEqual(releaseDigest(files), releaseDigest([f('plumber.R', 'a'), f('R/other.R', 'b')]));
});
