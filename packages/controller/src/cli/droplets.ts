import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Command } from '@commander-js/extra-typings';
import { outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';
import { table } from '../output/format.js';
import type { DropletRow, ImportResult } from '../commands/droplets.js';

export function listText(rows: DropletRow[]): string {
  if (rows.length === 0) return 'no droplets (create one with `plumb provision`)';
  return table([
    ['NAME', 'ID', 'ADDRESS', 'STATUS', 'GROUP', 'REGION', 'SIZE', 'AGENT'],
    ...rows.map((r) => [r.name, String(r.id), r.ipv4 || '-', r.status, r.group ?? '-', r.region, r.size, r.foreign ? 'not this controller' : r.enrolled ? 'enrolled' : 'not enrolled']),
  ]);
}

export function importText(r: ImportResult): string {
  return [
    ...r.imported.map((d) => `imported ${d.name} (${d.ipv4}), certificate pinned ${d.fingerprint?.slice(0, 16) ?? '?'}…`),
    ...r.unchanged.map((name) => `${name} was known already`),
    'the droplets answer this machine once they trust its key: send `plumb keys show` to their owner',
  ].join('\n');
}

export function register(program: Command) {
  const droplets = program.command('droplets').description('the droplets plumb knows; export and import them to share with another machine');
  helpFooter(droplets, ['plumb droplets', 'plumb droplets export > droplets.json', 'plumb droplets import droplets.json'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);

  const list = outputFlags(droplets
    .command('list', { isDefault: true })
    .description('the droplets plumb knows, with their state on DigitalOcean'))
    .action((o) => output(o, async (ctx) => (await import('../commands/droplets.js')).droplets(ctx), listText));
  helpFooter(list, ['plumb droplets list --json'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);

  const exported = droplets
    .command('export')
    .argument('[droplets...]', 'names or ids (all when none)')
    .description('print what another machine needs to manage these droplets (all when none named): addresses, ids, pins; nothing secret')
    // Always JSON: it is the input of `plumb droplets import`.
    .action((names) => output({ json: true, quiet: true }, async (ctx) => (await import('../commands/droplets.js')).exportDroplets(names, ctx), () => ''));
  helpFooter(exported, ['plumb droplets export api-1 > api-1.json']);

  const imported = outputFlags(droplets
    .command('import')
    .argument('<file>', 'the output of `plumb droplets export`, or - for stdin')
    .description('learn droplets from `plumb droplets export` output (a file, or - for stdin)'))
    .action((file, o) =>
      output(o, async (ctx) => (await import('../commands/droplets.js')).importDroplets(file === '-' ? readFileSync(0, 'utf8') : await readFile(file, 'utf8'), ctx), importText),
    );
  helpFooter(imported, ['plumb droplets import droplets.json', 'ssh laptop plumb droplets export | plumb droplets import -']);
}
