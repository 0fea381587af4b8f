import type { Command } from 'commander';
import type { Context } from './context.js';

type Run = <A extends unknown[], R>(work: (ctx: Context, ...args: A) => Promise<R>, print: (result: R) => string | Promise<string>) => (...args: A) => Promise<void>;

/** `plumb lb`: the DigitalOcean Load Balancer in front of a group of droplets (docs/scale-out.md). */
export function registerLb(program: Command, run: Run): void {
  const lb = program.command('lb').description("a DigitalOcean Load Balancer in front of a group's droplets (see plumb provision --group)");
  const number = (v: string) => Number(v);
  lb.command('list', { isDefault: true })
    .description("the groups' load balancers and each droplet's health as the balancer sees it")
    .argument('[group]', 'one group')
    .option('--json', 'print JSON')
    .action(run(async (ctx, group: string | undefined) => (await import('./commands/lb.js')).lbList(group === undefined ? {} : { group }, ctx), async (rows) => (await import('./commands/lb.js')).lbText(rows)));
  lb.command('create <group>')
    .description("a balancer for the group's tag: port 80 to the droplets, health checked on /__plumb/health")
    .option('--region <slug>', 'the region of the group', 'sfo3')
    .option('--check-interval <seconds>', 'seconds between health checks (default 10)', number)
    .option('--check-timeout <seconds>', 'seconds a check may take (default 5)', number)
    .option('--unhealthy-threshold <n>', 'failed checks in a row before a droplet is out (default 3)', number)
    .option('--healthy-threshold <n>', 'passed checks in a row before it is back (default 3)', number)
    .option('--json', 'print the result as JSON')
    .action(
      run(
        async (ctx, group: string, o: { region: string; checkInterval?: number; checkTimeout?: number; unhealthyThreshold?: number; healthyThreshold?: number }) =>
          (await import('./commands/lb.js')).lbCreate(
            {
              group,
              region: o.region,
              ...(o.checkInterval === undefined ? {} : { checkIntervalSeconds: o.checkInterval }),
              ...(o.checkTimeout === undefined ? {} : { responseTimeoutSeconds: o.checkTimeout }),
              ...(o.unhealthyThreshold === undefined ? {} : { unhealthyThreshold: o.unhealthyThreshold }),
              ...(o.healthyThreshold === undefined ? {} : { healthyThreshold: o.healthyThreshold }),
            },
            ctx,
          ),
        async (r) => (await import('./commands/lb.js')).lbText([r]),
      ),
    );
  lb.command('destroy <group>')
    .description("delete the group's load balancer (the droplets stay)")
    .option('--json', 'print the result as JSON')
    .action(run(async (ctx, group: string) => (await import('./commands/lb.js')).lbDestroy(group, ctx), (r) => `destroyed load balancer ${r.name} (${r.id}); the droplets of group ${r.group} stay`));
}
