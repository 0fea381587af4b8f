/**
 * What one `nft list table ip plumb` said: the table as the kernel lists it, `absent` (nft ran and
 * found no such table: flushed, or deleted), or `unknown` (nft could not be asked: it failed, timed
 * out, or is not installed), which says nothing about the table.
 */
export type TableListing = { kind: 'table'; text: string } | { kind: 'absent' } | { kind: 'unknown' };

/** nft's exit code and output as a listing: a missing table is ENOENT's "No such file or directory". */
export function tableListing(result: { exitCode?: number | undefined; stdout: string; stderr: string } | undefined): TableListing {
  if (result?.exitCode === 0) return { kind: 'table', text: result.stdout };
  if (result?.exitCode === 1 && /No such file or directory/.test(result.stderr)) return { kind: 'absent' };
  return { kind: 'unknown' };
}

/**
 * Whether the live table is still the one the agent put in place, against the listing taken right
 * after its last apply (the baseline). A listing that failed is no baseline: the table then reads
 * as unchanged until a listing is read (the next look takes the table as it finds it), never as
 * changed, which would put it back and record a routing-restored event for nothing. A table found
 * absent after an apply is lost whatever the baseline said.
 */
export class NatBaseline {
  /** The listing behind the last apply; undefined: no apply yet (nothing of the agent's to lose). */
  private baseline: Promise<TableListing> | undefined;

  constructor(private readonly list: () => Promise<TableListing>) {}

  /** After an apply: the listing taken now is what later ones are compared with (not awaited here). */
  applied(): void {
    this.baseline = this.list();
  }

  async lost(): Promise<boolean> {
    if (this.baseline === undefined) return false;
    const expected = await this.baseline;
    const now = await this.list();
    if (now.kind === 'unknown') return false;
    if (now.kind === 'absent') return true;
    if (expected.kind === 'table') return now.text !== expected.text;
    this.baseline = Promise.resolve(now);
    return false;
  }
}
