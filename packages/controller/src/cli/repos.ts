import type { Command } from '@commander-js/extra-typings';
import { dropletFlag, outputFlags } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

export function register(program: Command) {
  const command = outputFlags(program
    .command('repos')
    .description("the droplet's default CRAN-like repositories for R packages Debian does not ship; change them with the flags")
    .option('--repo <url>', 'source builds come from here (default: CRAN)')
    .option('--binary-repo <url>', "binaries built for the droplet's Debian, tried before source builds")
    .option('--reset', 'back to CRAN and no binary repository')
    .addOption(dropletFlag()))
    .action(async ({ json, quiet, ...o }) => {
      const { repos, reposText } = await import('../commands/packages.js');
      await output({ json, quiet }, (ctx) => repos(o, ctx), reposText);
    });
  helpFooter(command, ['plumb repos', 'plumb repos --binary-repo https://p3m.dev/cran/__linux__/trixie/latest']);
}
