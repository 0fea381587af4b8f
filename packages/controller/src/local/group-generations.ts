import path from 'node:path';
import * as z from 'zod';
import { readJson, writePrivateJson } from './config.js';

const File = z.object({ version: z.literal(1), groups: z.record(z.string(), z.record(z.string(), z.number().int().nonnegative())) });

/**
 * The highest generation this controller has given each group's API (docs/scale-out.md): a group
 * deploy that goes on without an unreachable member, which may hold the newest mark, still takes a
 * generation no member holds. The agents' marks stay the record; this only keeps numbers from
 * repeating. A damaged file is as good as none.
 */
export class GroupGenerations {
  constructor(private readonly file: string) {}

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

  async raise(group: string, api: string, generation: number): Promise<void> {
    const groups = await this.all();
    groups[group] = { ...groups[group], [api]: Math.max(groups[group]?.[api] ?? 0, generation) };
    await writePrivateJson(this.file, { version: 1, groups });
  }
}
