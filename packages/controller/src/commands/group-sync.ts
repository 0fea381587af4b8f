import { AGENT_FEATURES, ENTRYPOINTS, PlumbError, type ExportResult, type GroupChange, type GroupMark } from '@plumb/shared';
import { agentProgress, type Context } from '../context.js';
import { withAgent } from '../agent/connect.js';
import { deploy, type PackedBundle } from './deploy.js';
import { groupMembers, type MemberOutcome } from './group.js';
import { groupApis } from './group-ops.js';
import { status } from './status.js';

/** One API brought to the group's current release: where it came from, and each member it was copied to. */
export interface SyncedApi {
  name: string;
  /** The member whose live release is the group's current one, and that release there. */
  source: string;
  release: string;
  droplets: MemberOutcome[];
}

export interface SyncResult {
  group: string;
  ok: boolean;
  apis: SyncedApi[];
  /** Members that could not be asked: neither checked nor changed. */
  unreachable: string[];
  tookMs: number;
}

/** The live release of `name` on a member, as bytes and settings (its agent packs it). */
async function exportFrom(dropletId: number, name: string, ctx: Context): Promise<{ exported: ExportResult; chunks: Buffer[] }> {
  return withAgent(ctx, String(dropletId), async ({ droplet, connection }) => {
    if (!connection.hello.features.includes(AGENT_FEATURES.exportRelease)) {
      throw new PlumbError('AGENT_OUTDATED', `the agent on ${droplet.name} cannot hand out a release (it is ${connection.head.agentVersion})`, `\`plumb upgrade --droplet ${droplet.name}\`, then sync again`);
    }
    const chunks: Buffer[] = [];
    const exported = await connection.start<ExportResult>({ type: 'export', name }, { onChunk: (c) => chunks.push(c), onProgress: agentProgress(ctx) }).result;
    const got = chunks.reduce((n, c) => n + c.length, 0);
    if (got !== exported.bytes) throw new PlumbError('DISCONNECTED', `the release of ${name} from ${droplet.name} arrived cut (${got} of ${exported.bytes} bytes)`, 'sync again');
    return { exported, chunks };
  });
}

/** The deploy that puts an exported release on another member, with the settings it runs with on its source. */
function copyTo(dropletId: number, exported: ExportResult, chunks: Buffer[], group: ReturnType<typeof copyMark>, ctx: Context) {
  const s = exported.settings;
  const bundle: PackedBundle = {
    info: { files: exported.files, entrypoint: ENTRYPOINTS.find((e) => exported.files.some((f) => f.toLowerCase() === e.toLowerCase())) ?? 'plumber.R' },
    detected: null,
    whole: () => Promise.resolve(() => chunks),
    hashing: null,
    close: () => Promise.resolve(),
    ...(exported.packages ? { packages: exported.packages } : {}),
  };
  return deploy(
    {
      dir: `(release ${exported.release})`,
      name: exported.name,
      droplet: String(dropletId),
      path: s.path,
      forward: exported.forwarded,
      env: Object.entries(s.env).map(([k, v]) => `${k}=${v}`),
      // An empty env too: the member's own --env must not stay.
      replaceEnv: true,
      workers: s.workers,
      // null too: a setting the source has none of must not stay as the member had it.
      healthPath: s.healthPath,
      healthTimeoutSeconds: Math.ceil(s.healthTimeoutMs / 1000),
      memory: s.memoryMax,
      keep: s.keepReleases,
      drainTimeoutSeconds: Math.round(s.drainTimeoutMs / 1000),
      ...(group ? { groupChange: group } : {}),
    },
    ctx,
    bundle,
  );
}

/**
 * A copy carries the mark of the group change that put the release live on its source, kind and
 * generation alike: a copy of a deploy's release counts as part of that deploy (`rollback --group`
 * takes the member back too), a copy of a rollback's release as rolled back (a late joiner given
 * the release the others went back to has nothing left to undo, and reads as the group's newest
 * change). A source changed by hand since gives none: the copy is current by its content alone.
 */
export const copyMark = (mark: GroupMark | null): (GroupChange & { kind: GroupMark['kind'] }) | undefined => (mark ? { name: mark.name, generation: mark.generation, kind: mark.kind } : undefined);

/**
 * `plumb group sync G` (and `provision --group G` for the new droplet): every member that does not
 * run the group's current release of an API (one that was off during a group deploy, or that joined
 * later) gets it, copied from the member that runs it, agent to agent through this controller on
 * the authenticated sockets, so the laptop need not have the API's directory any more. Each copy is
 * a normal deploy on its droplet (health gate, zero-downtime switch). `only`: these droplets alone;
 * `api`: that API alone.
 */
export async function syncGroup(group: string, opts: { only?: number[]; api?: string }, ctx: Context): Promise<SyncResult> {
  const started = Date.now();
  const members = await groupMembers(group, ctx);
  const statuses = await status({ members, remember: false }, ctx);
  const apis: SyncedApi[] = [];
  for (const api of groupApis(group, members, statuses).filter((a) => opts.api === undefined || a.name === opts.api)) {
    const targets = api.members.filter((m) => (m.state === 'drift' || m.state === 'missing') && (opts.only === undefined || opts.only.includes(m.id)));
    if (targets.length === 0) continue;
    ctx.progress({ step: `copying ${api.name} from ${api.source.droplet} to ${targets.map((t) => t.droplet).join(', ')}` });
    let copy: Awaited<ReturnType<typeof exportFrom>> | undefined;
    let refused: MemberOutcome['error'];
    try {
      copy = await exportFrom(api.source.id, api.name, ctx);
    } catch (err) {
      refused = { code: err instanceof PlumbError ? err.code : 'INTERNAL', message: `could not take it from ${api.source.droplet}: ${(err as Error).message}`, log: [] };
    }
    const droplets: MemberOutcome[] = [];
    for (const t of targets) {
      if (!copy) {
        droplets.push({ droplet: t.droplet, id: t.id, outcome: 'failed', from: t.release, release: t.release, ...(refused ? { error: refused } : {}) });
        continue;
      }
      try {
        const done = await copyTo(t.id, copy.exported, copy.chunks, copyMark(api.source.mark), ctx);
        droplets.push({ droplet: t.droplet, id: t.id, outcome: 'updated', from: t.release, release: done.release });
      } catch (err) {
        droplets.push({ droplet: t.droplet, id: t.id, outcome: 'failed', from: t.release, release: t.release, error: { code: err instanceof PlumbError ? err.code : 'INTERNAL', message: (err as Error).message, log: [] } });
      }
    }
    apis.push({ name: api.name, source: api.source.droplet, release: api.source.release, droplets });
  }
  const unreachable = statuses.filter((s, i) => !s.status && (opts.only === undefined || opts.only.includes(members[i]!.id))).map((s) => s.droplet);
  const ok = unreachable.length === 0 && apis.every((a) => a.droplets.every((d) => d.outcome === 'updated'));
  return { group, ok, apis, unreachable, tookMs: Date.now() - started };
}

export function syncText(r: SyncResult): string {
  const head = r.apis.length === 0 && r.unreachable.length === 0 ? `every droplet of group ${r.group} already runs the group's current release of each API` : `group ${r.group}${r.ok ? ' is in step' : ': NOT every droplet could be brought to the current release'}`;
  const apis = r.apis.map((a) =>
    [
      `  ${a.name}: release ${a.release} of ${a.source}, copied to`,
      ...a.droplets.map((d) => (d.outcome === 'updated' ? `    ${d.droplet}: ${d.from ?? 'nothing'} -> ${d.release}` : `    ${d.droplet}: FAILED (${d.error?.message ?? '?'}); runs ${d.release ?? 'nothing'}`)),
    ].join('\n'),
  );
  const unreachable = r.unreachable.length > 0 ? [`  could not be asked (left as they are): ${r.unreachable.join(', ')}`] : [];
  return [head, ...apis, ...unreachable].join('\n');
}
