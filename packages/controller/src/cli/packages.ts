import type { Command } from '@commander-js/extra-typings';
import { dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = outputFlags(program
    .command('packages')
    .argument('<name>', 'API name')
    .description("the R packages of an API's live release: version and where each came from")
    .addOption(dropletFlag()))
    .action(async (name, o) => {
      const { packages, packagesText } = await import('../commands/packages.js');
      await output(o, (ctx) => packages(name, o, ctx), packagesText);
    });
  helpFooter(command, ['plumb packages hello', 'plumb packages hello --json']);
}
