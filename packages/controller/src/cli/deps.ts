import type { Command } from '@commander-js/extra-typings';
import { binaryRepoFlag, dropletFlag, outputFlags, repoFlag, strictVersionsFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = outputFlags(program
    .command('deps')
    .argument('<dir>', 'the API directory')
    .description('the R packages the API in DIR needs, and how the droplet would install each (nothing is deployed)')
    .option('--name <name>', 'the API it would be deployed as (its own library counts as installed)')
    .option('--local', 'only read DIR: do not ask a droplet')
    .addOption(strictVersionsFlag())
    .addOption(repoFlag())
    .addOption(binaryRepoFlag())
    .addOption(dropletFlag()))
    .action(async (dir, { json, quiet, ...o }) => {
      const { deps, depsText } = await import('../commands/packages.js');
      await output({ json, quiet }, (ctx) => deps({ dir, ...o }, ctx), depsText);
    });
  helpFooter(command, ['plumb deps ./my-api --local', 'plumb deps ./my-api --name hello']);
}
