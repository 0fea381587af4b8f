import type { Command } from '@commander-js/extra-typings';
import { outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = outputFlags(program
    .command('init')
    .argument('[dir]', 'the API directory', '.')
    .description('write a plumb.toml in DIR, so that `plumb deploy` there needs no flags')
    .option('--name <name>', "the API's name (default: the directory's name)"))
    .action((dir, o) => output(o, async () => (await import('../commands/init.js')).init({ dir, ...o }), (r) => `wrote ${r.file} for the API ${r.name}: plumb deploy ${dir === '.' ? '' : `${dir} `}deploys it`.trimEnd()));
  helpFooter(command, ['plumb init', 'plumb init ./my-api --name hello']);
}
