import path from 'node:path';
import * as z from 'zod';
import { readJson, writePrivateJson } from './config.js';

const File = z.object({ version: z.literal(1), droplets: z.record(z.string(), z.number().int().nonnegative()) });

/**
 * The newest agent event this user has been shown, per droplet (by uuid), so `plumb status`
 * shows only what happened since the last look. A damaged file is as good as none.
 */
export class SeenEvents {
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  static in(configDir: string): SeenEvents {
    return new SeenEvents(path.join(configDir, 'seen-events.json'));
  }

  async all(): Promise<Record<string, number>> {
    const parsed = File.safeParse(await readJson(this.file).catch(() => undefined));
    return parsed.success ? parsed.data.droplets : {};
  }

  /** Raises the remembered ids (never lowers one, unless `reset`: that droplet's events started over). */
  remember(ids: Record<string, number>, reset: string[] = []): Promise<void> {
    this.writing = this.writing.catch(() => {}).then(async () => {
      const droplets = await this.all();
      for (const uuid of reset) delete droplets[uuid];
      for (const [uuid, id] of Object.entries(ids)) droplets[uuid] = Math.max(droplets[uuid] ?? 0, id);
      await writePrivateJson(this.file, { version: 1, droplets });
    });
    return this.writing;
  }
}
