import path from 'node:path';
import * as z from 'zod';
import { LOCAL_STATE_LOCK_WAIT_MS, PlumbError } from '@plumb/shared';
import { withFileLock } from '@plumb/shared/files';
import { readJson, writePrivateJson } from './config.js';

const File = z.object({ version: z.literal(1), groups: z.record(z.string(), z.record(z.string(), z.number().int().nonnegative())) });

/**
 * The highest generation this controller has given each group's API (docs/scale-out.md): a group
 * deploy that goes on without an unreachable member, which may hold the newest mark, still takes a
 * generation no member holds. The agents' marks stay the record; this only keeps numbers from
 * repeating. A damaged file is as good as none.
 */
export class GroupGenerations {
  constructor(
    private readonly file: string,
    /** How long to wait for another plumb process numbering a group deploy (tests shorten it). */
    private readonly lockWaitMs = LOCAL_STATE_LOCK_WAIT_MS,
  ) {}

  static in(configDir: string): GroupGenerations {
    return new GroupGenerations(path.join(configDir, 'group-generations.json'));
  }

  private async all(): Promise<Record<string, Record<string, number>>> {
    const parsed = File.safeParse(await readJson(this.file).catch(() => undefined));
    return parsed.success ? parsed.data.groups : {};
  }

  async highest(group: string, api: string): Promise<number> {
    return (await this.all())[group]?.[api] ?? 0;
  }

  /**
   * Reads the highest generation given to the group's API, lets `next` pick the new one from it,
   * and records that, all under the file's lock: two group deploys at once from this machine
   * (two terminals, a CI job beside a laptop session) each get their own number. `next` may throw
   * (a member that cannot be asked): then nothing is recorded. A config directory that cannot be
   * written does not stop the deploy: the number then comes from the marks and the file as it is.
   */
  async claim<T extends { generation: number }>(group: string, api: string, next: (recorded: number) => T): Promise<T> {
    const locked = withFileLock(
      this.file,
      async () => {
        const groups = await this.all();
        const recorded = groups[group]?.[api] ?? 0;
        const claimed = next(recorded);
        groups[group] = { ...groups[group], [api]: Math.max(recorded, claimed.generation) };
        await writePrivateJson(this.file, { version: 1, groups });
        return claimed;
      },
      this.lockWaitMs,
    );
    // A refusal (held too long, a member that cannot be asked) stands; a file system error does not.
    return locked.catch(async (err: unknown) => {
      if (err instanceof PlumbError) throw err;
      return next(await this.highest(group, api));
    });
  }
}
