import { SPARE_EXPECTED_BYTES, SPARE_HANDOVER_FLOOR_MS, SPARE_RESERVE_MIN_BYTES, SPARE_RESERVE_SHARE, type SparePolicy } from '@plumb/shared';
import type { DropletMemory } from '../system/memory.js';

/**
 * Whether an API keeps a warm spare after a deploy (docs/architecture.md, "the warm spare"). Pure:
 * the caller (ops/spare.ts keepSpare) reads the droplet's memory (system/memory.ts) and remembers
 * the API's measurements.
 */
export interface SpareInputs {
  policy: SparePolicy;
  /** The API's workers after the deploy. */
  workers: number;
  /** The droplet's memory (system/memory.ts dropletMemory, within its cgroup's limit); undefined: /proc/meminfo did not say. */
  memory: DropletMemory | undefined;
  /** What a spare of this API is expected to hold: its last spare's resident memory, else a worker's; null: neither known. */
  expectedBytes: number | null;
  /** The API's last cold start, start until every worker answers, in ms; null: none measured since the agent started. */
  coldMs: number | null;
  /** The API's quickest spare, handover until it answered, in ms; null: none measured. */
  spareMs: number | null;
  /** The API's last spare, handover until it answered, in ms; null: none measured. */
  lastSpareMs?: number | null;
  /**
   * What other APIs' spares still loading will take beyond what they hold now (each one's expected
   * size less its resident memory): MemAvailable does not show it yet.
   */
  loadingBytes?: number;
}

/** `slow`: ended by the time rule (the last handover took more than a spare saves). */
export type SpareDecision = { keep: true } | { keep: false; why: string; slow?: true };

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.round(bytes / MIB)} MiB`;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** The memory auto keeps free: SPARE_RESERVE_MIN_BYTES or SPARE_RESERVE_SHARE of the droplet's, whichever is more. */
export const spareReserve = (totalBytes: number): number => Math.max(SPARE_RESERVE_MIN_BYTES, Math.round(totalBytes * SPARE_RESERVE_SHARE));

/**
 * `always` keeps one and `never` none. `auto` keeps one when:
 * - the API runs one worker: with more, the switch waits for the others, started cold, so one spare
 *   saves nothing, and one per worker would hold that many R processes' memory for every API;
 * - memory allows: MemAvailable (less what other spares still loading will take) less the
 *   spare's expected size stays at or above spareReserve (decided once the API's previous workers
 *   have stopped);
 * - it pays: what a spare saves (the last cold start less the quickest spare's handover until it
 *   answered) is at least what the last spare took, SPARE_HANDOVER_FLOOR_MS for either not
 *   measured. With steady handovers that is a cold start twice a spare's; handovers that grow
 *   slow (a busy droplet, an API whose own code takes the time, as a model read in plumber.R)
 *   end it. No cold start measured yet (the spare served every deploy since the agent started):
 *   it keeps paying.
 * `why` is worded for plumb status: `hello: no warm spare (WHY)`.
 */
export function decideSpare(i: SpareInputs): SpareDecision {
  if (i.policy === 'always') return { keep: true };
  if (i.policy === 'never') return { keep: false, why: '--no-spare' };
  if (i.workers > 1) return { keep: false, why: `auto: ${i.workers} workers, and one spare does not speed a redeploy whose other workers start cold` };
  const { memory } = i;
  if (!memory) return { keep: false, why: 'auto: /proc/meminfo gives no MemTotal and MemAvailable' };
  const available = Math.max(0, memory.availableBytes - (i.loadingBytes ?? 0));
  const expected = i.expectedBytes ?? SPARE_EXPECTED_BYTES;
  const reserve = spareReserve(memory.totalBytes);
  if (available - expected < reserve) return { keep: false, why: `auto: ${mib(available)} available, a spare takes ~${mib(expected)}, ${mib(reserve)} kept free` };
  const quickest = i.spareMs ?? SPARE_HANDOVER_FLOOR_MS;
  const last = i.lastSpareMs ?? quickest;
  if (i.coldMs !== null && i.coldMs - quickest < last) return { keep: false, why: `auto: a cold start took ${s(i.coldMs)}, the last spare's handover ${s(last)} (${s(quickest)} at best): it saved less than the handover itself took`, slow: true };
  return { keep: true };
}
