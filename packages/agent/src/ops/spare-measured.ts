import { readFile, stat } from 'node:fs/promises';
import * as z from 'zod';
import { ApiName, SPARE_MEASURED_MAX_BYTES } from '@plumb/shared';
import { writeFileAtomic } from '@plumb/shared/files';
import { log } from '../log.js';

/**
 * What auto decides an API's spare by (ops/spare.ts keepSpare), kept on disk so that an agent
 * restart (plumb upgrade, a reboot, a crash) does not forget it: its last cold start of one worker,
 * its quickest and last spare handover, and its last spare's size. Soft figures, so not in
 * state.json (the droplet's truth, which a damage rebuilds): a file that is missing, bigger than
 * SPARE_MEASURED_MAX_BYTES, not JSON or not this shape is no file, and auto starts with none, as on
 * a new droplet. Only the APIs in the state are kept: one removed is forgotten (stopSpare forget),
 * and one the state no longer lists when the agent starts is dropped then.
 */
/** Its name in the agent's state dir (/var/lib/plumb). */
export const SPARE_MEASURED_FILE = 'spare-measurements.json';

/** No start or handover takes a day, no spare a TiB: a figure beyond is a damaged file (a deploy would wait on it). */
const ms = z.number().nonnegative().max(24 * 3600 * 1000).optional();
export const Measured = z.strictObject({
  coldMs: ms,
  spareMs: ms,
  lastSpareMs: ms,
  spareBytes: z.number().int().nonnegative().max(2 ** 40).optional(),
});
export type Measured = z.infer<typeof Measured>;

const MeasuredFile = z.strictObject({ version: z.literal(1), apis: z.record(ApiName, Measured) });

/** The file's text for `measured` (undefined figures left out). */
export const renderMeasured = (measured: ReadonlyMap<string, Measured>): string => `${JSON.stringify({ version: 1, apis: Object.fromEntries(measured) })}\n`;

/** The measurements in `text` of the APIs named in `names`; none when `text` is not such a file. */
export function parseMeasured(text: string, names: ReadonlySet<string>): Map<string, Measured> {
  let parsed: ReturnType<typeof MeasuredFile.safeParse>;
  try {
    parsed = MeasuredFile.safeParse(JSON.parse(text));
  } catch {
    return new Map();
  }
  if (!parsed.success) return new Map();
  return new Map(Object.entries(parsed.data.apis).filter(([name]) => names.has(name)));
}

/**
 * The file's measurements of the APIs in `names`, and whether the file says just that (else the
 * caller writes it again: an API dropped, a damaged file replaced).
 */
export async function readMeasured(file: string, names: ReadonlySet<string>): Promise<{ measured: Map<string, Measured>; tidy: boolean }> {
  // A regular file only: a fifo or a device there would hold the agent's start.
  const size = await stat(file).then((s) => (s.isFile() ? s.size : undefined), () => undefined);
  const text = size !== undefined && size <= SPARE_MEASURED_MAX_BYTES ? await readFile(file, 'utf8').catch(() => undefined) : undefined;
  const measured = text === undefined ? new Map<string, Measured>() : parseMeasured(text, names);
  return { measured, tidy: text === undefined ? size === undefined : text === renderMeasured(measured) };
}

/**
 * Writes `snapshot()` to `file` behind the caller (a deploy's answer does not wait for the fsyncs),
 * one write at a time: a save asked for during a write is done once after it, with what the
 * snapshot says then. A write that fails is logged: the figures are soft, and the next save tries again.
 */
export function measuredSaver(file: string, snapshot: () => string): { save: () => void; saved: () => Promise<void> } {
  let writing: Promise<void> | undefined;
  let again = false;
  const run = async () => {
    do {
      again = false;
      await writeFileAtomic(file, snapshot(), 0o600).catch((err: Error) => log.warn('could not write the spare measurements', { error: err.message }));
    } while (again);
    writing = undefined;
  };
  return {
    save: () => {
      if (writing) again = true;
      else writing = run();
    },
    saved: () => writing ?? Promise.resolve(),
  };
}
