import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import { EVENTS_KEPT, RecordedEvent, type EventKind } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { log } from '../log.js';

/** What an operation or the monitor says happened; the log adds the id and the time. */
export interface EventInput {
  kind: EventKind;
  api?: string | null;
  port?: number | null;
  by?: RecordedEvent['by'];
  detail: string;
}

/** Events are read one by one: after a downgrade, events of kinds this version does not know are left out, not the file. */
const EventsFile = z.object({ version: z.literal(1), events: z.array(z.unknown()) });

/** The ring: `ring` plus `item`, keeping the newest `max`. */
export function appendBounded<T>(ring: readonly T[], item: T, max: number): T[] {
  const next = [...ring, item];
  return next.length > max ? next.slice(next.length - max) : next;
}

/**
 * The droplet's recent events (docs/health.md): a bounded ring kept in memory, saved whole and
 * atomically to events.json after each change (writes coalesce), read back at start, so ids keep
 * increasing across agent restarts. Listeners (watching controllers, alerts) hear each event as
 * it is recorded.
 */
export class EventLog {
  private ring: RecordedEvent[] = [];
  private file: string | undefined;
  private readonly listeners = new Set<(event: RecordedEvent) => void>();
  private saving: Promise<void> = Promise.resolve();
  private saveQueued = false;

  constructor(private readonly max = EVENTS_KEPT) {}

  /** Reads the saved ring; from then on every change is saved. A damaged file is set aside, not fatal. */
  async open(stateDir: string): Promise<void> {
    const file = path.join(stateDir, 'events.json');
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    let saved: RecordedEvent[] = [];
    if (text !== undefined) {
      let parsed: z.ZodSafeParseResult<z.infer<typeof EventsFile>> | undefined;
      try {
        parsed = EventsFile.safeParse(JSON.parse(text));
      } catch {
        parsed = undefined;
      }
      if (parsed?.success) saved = parsed.data.events.flatMap((e) => RecordedEvent.safeParse(e).data ?? []);
      else {
        log.warn('events file damaged; starting a new one', { file, kept: `${file}.damaged` });
        await rename(file, `${file}.damaged`);
      }
    }
    // Anything recorded before the file was read follows what was saved.
    const early = this.ring;
    this.ring = saved.slice(-this.max);
    this.file = file;
    for (const e of early) this.ring = appendBounded(this.ring, { ...e, id: this.lastId + 1 }, this.max);
    if (early.length > 0) this.save();
  }

  get lastId(): number {
    return this.ring.at(-1)?.id ?? 0;
  }

  record(input: EventInput): RecordedEvent {
    const event: RecordedEvent = {
      id: this.lastId + 1,
      time: new Date().toISOString(),
      kind: input.kind,
      api: input.api ?? null,
      port: input.port ?? null,
      by: input.by ?? null,
      detail: input.detail,
    };
    this.ring = appendBounded(this.ring, event, this.max);
    log.info('event', { id: event.id, kind: event.kind, api: event.api ?? undefined, port: event.port ?? undefined, by: event.by ?? undefined, detail: event.detail });
    this.save();
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        log.warn('an event listener failed', { error: (err as Error).message });
      }
    }
    return event;
  }

  /** Events after `id` (all when null), oldest first, at most the newest `max`. */
  after(id: number | null, max = this.max): RecordedEvent[] {
    const newer = id === null ? this.ring : this.ring.filter((e) => e.id > id);
    return newer.slice(-max);
  }

  latest(max: number): RecordedEvent[] {
    return this.ring.slice(-max);
  }

  subscribe(listener: (event: RecordedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once what was recorded so far is on disk. */
  async flush(): Promise<void> {
    await this.saving;
  }

  private save(): void {
    const file = this.file;
    if (file === undefined || this.saveQueued) return;
    this.saveQueued = true;
    this.saving = this.saving
      .then(async () => {
        // Taken when the write starts, so events recorded while it waited go in this write.
        this.saveQueued = false;
        await writeFileAtomic(file, `${JSON.stringify({ version: 1, events: this.ring })}\n`, 0o600);
      })
      .catch((err: unknown) => log.warn('could not save events', { file, error: (err as Error).message }));
  }
}

/** The agent's one event log: main.ts opens it, operations and the monitor record into it. */
export const events = new EventLog();
