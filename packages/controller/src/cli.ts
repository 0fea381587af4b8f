#!/usr/bin/env node
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { PlumbError } from '@plumb/shared';
import { defaultContext, type Context } from './context.js';
import { progressReporter } from './progress.js';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

interface OutputOptions {
  json?: boolean;
}

/**
 * Wires each command to its function in commands/ and prints what it returns: as text, or as
 * JSON with --json. Errors are printed in one place, at the bottom.
 */
function run<A extends unknown[], R>(work: (ctx: Context, ...args: A) => Promise<R>, print: (result: R) => string) {
  return async (...args: A) => {
    const command = args[args.length - 1] as Command;
    const opts = command.opts<OutputOptions>();
    const reporter = progressReporter();
    try {
      const result = await work(defaultContext(reporter.progress), ...args);
      reporter.stop();
      process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${print(result)}\n`);
    } catch (err) {
      reporter.stop();
      throw err;
    }
  };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const program = new Command('plumb')
  .description('put R plumber APIs on DigitalOcean droplets and keep them running')
  .version(version)
  .showHelpAfterError();

program
  .command('provision')
  .description('create a droplet with R, plumber, nginx, a firewall and the plumb agent')
  .option('--name <name>', 'droplet name (default: plumb-XXXXXX)')
  .option('--region <slug>', 'DigitalOcean region', 'sfo3')
  .option('--size <slug>', 'droplet size', 's-1vcpu-1gb')
  .option('--image <slug>', 'image (Debian 13 is what plumb is built for)', 'debian-13-x64')
  .option('--ssh-key <fingerprint|name>', 'an SSH key of your DigitalOcean account, for root login')
  .option('--tag <tag>', 'an extra tag (repeatable)', (tag: string, tags: string[]) => [...tags, tag], [] as string[])
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, o: { name?: string; region: string; size: string; image: string; sshKey?: string; tag: string[] }) =>
        (await import('./commands/provision.js')).provision({ ...o, tags: o.tag }, ctx),
      (r) =>
        [
          `droplet ${r.droplet.name} (id ${r.droplet.id}) is ready at ${r.droplet.ipv4} in ${seconds(r.tookMs)}`,
          `  agent ${r.agentVersion}, enrolled; certificate pinned ${r.droplet.fingerprint?.slice(0, 16)}…`,
          `  swap: ${r.swap ? `${(r.swap.bytes / 1024 ** 3).toFixed(1)} GiB at ${r.swap.path}, ${r.swap.enabled ? 'enabled' : 'created, not enabled'}` : 'none'}`,
          `  nginx answers at http://${r.droplet.ipv4}/`,
        ].join('\n'),
    ),
  );

program
  .command('droplets')
  .description('the droplets plumb knows, with their state on DigitalOcean')
  .option('--json', 'print JSON')
  .action(
    run(
      async (ctx) => (await import('./commands/droplets.js')).droplets(ctx),
      (rows) =>
        rows.length === 0
          ? 'no droplets (create one with `plumb provision`)'
          : [
              ['NAME', 'ID', 'ADDRESS', 'STATUS', 'REGION', 'SIZE', 'AGENT'],
              ...rows.map((r) => [r.name, String(r.id), r.ipv4 || '-', r.status, r.region, r.size, r.foreign ? 'not this controller' : r.enrolled ? 'enrolled' : 'not enrolled']),
            ]
              .map((cols, _i, all) => cols.map((c, j) => c.padEnd(Math.max(...all.map((row) => row[j]?.length ?? 0)))).join('  ').trimEnd())
              .join('\n'),
    ),
  );

program
  .command('destroy <droplet>')
  .description('delete a droplet (by name or id) and forget it')
  .option('--yes', 'do not ask for confirmation')
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, which: string, o: { yes?: boolean }) => {
        if (!o.yes) await confirmDestroy(which, ctx);
        return (await import('./commands/destroy.js')).destroy(which, ctx);
      },
      (r) => (r.outcome === 'deleted' ? `destroyed droplet ${r.name} (id ${r.id})` : `droplet ${r.name} (id ${r.id}) was already gone; forgotten`),
    ),
  );

async function confirmDestroy(which: string, ctx: Context): Promise<void> {
  const droplet = await ctx.droplets.find(which);
  if (!process.stdin.isTTY) throw new PlumbError('CONFIRMATION_NEEDED', `refusing to destroy ${droplet.name} without confirmation`, 'add --yes');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(`Destroy droplet ${droplet.name} (id ${droplet.id}, ${droplet.ipv4}) and everything on it? Type its name to confirm: `);
  rl.close();
  if (answer.trim() !== droplet.name) throw new PlumbError('NOT_CONFIRMED', 'not destroyed: the name did not match');
}

program.parseAsync().catch((err: unknown) => {
  if (err instanceof PlumbError) {
    process.stderr.write(`plumb: ${err.message}\n${err.hint ? `  ${err.hint}\n` : ''}`);
  } else {
    process.stderr.write(`plumb: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exitCode = 1;
});
