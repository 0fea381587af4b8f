import type { Command } from '@commander-js/extra-typings';
import { range, ValidationError } from '@plumb/shared/core';
import { confirm } from './confirm.js';
import { collect, outputFlags, wholeNumber, yesFlag } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';

// DigitalOcean's own ranges for a balancer's health check.
const seconds = wholeNumber(range(3, 300));
const checks = wholeNumber(range(2, 10));

/** `plumb lb`: the DigitalOcean Load Balancer in front of a group of droplets (docs/scale-out.md). */
export function register(program: Command) {
  const lb = program.command('lb').description("a DigitalOcean Load Balancer in front of a group's droplets (see plumb provision --group)");
  helpFooter(lb, ['plumb lb', 'plumb lb create web', 'plumb lb https web --domain api.example.com', 'plumb lb destroy web'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);

  const list = outputFlags(lb
    .command('list', { isDefault: true })
    .description("the groups' load balancers and each droplet's health as the balancer sees it")
    .argument('[group]', 'one group'))
    .action((group, o) => output(o, async (ctx) => (await import('../commands/lb.js')).lbList(group === undefined ? {} : { group }, ctx), async (rows) => (await import('../commands/lb.js')).lbText(rows)));
  helpFooter(list, ['plumb lb list web --json'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);

  const create = outputFlags(lb
    .command('create')
    .argument('<group>', 'the group (plumb provision --group)')
    .description("a balancer for the group's tag: port 80 to the droplets, health checked on /__plumb/health")
    .option('--region <slug>', 'the region of the group', 'sfo3')
    .option('--check-interval <seconds>', 'seconds between health checks (default 10)', seconds)
    .option('--check-timeout <seconds>', 'seconds a check may take (default 5)', seconds)
    .option('--unhealthy-threshold <n>', 'failed checks in a row before a droplet is out (default 3)', checks)
    .option('--healthy-threshold <n>', 'passed checks in a row before it is back (default 3)', checks))
    .action((group, { json, quiet, region, checkInterval, checkTimeout, unhealthyThreshold, healthyThreshold }) =>
      output(
        { json, quiet },
        async (ctx) =>
          (await import('../commands/lb.js')).lbCreate(
            {
              group,
              region,
              ...(checkInterval === undefined ? {} : { checkIntervalSeconds: checkInterval }),
              ...(checkTimeout === undefined ? {} : { responseTimeoutSeconds: checkTimeout }),
              ...(unhealthyThreshold === undefined ? {} : { unhealthyThreshold }),
              ...(healthyThreshold === undefined ? {} : { healthyThreshold }),
            },
            ctx,
          ),
        async (r) => (await import('../commands/lb.js')).lbText([r]),
      ),
    );
  helpFooter(create, ['plumb lb create web', 'plumb lb create web --region ams3 --unhealthy-threshold 2'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);

  const https = outputFlags(lb
    .command('https')
    .argument('<group>', 'the group whose balancer gets HTTPS')
    .description("HTTPS on the group's balancer: a DigitalOcean-managed Let's Encrypt certificate (the domain's zone must be on DigitalOcean DNS), port 443, and http redirected to https")
    .option('-d, --domain <domain>', 'a name the group answers to (repeatable; its zone must be on DigitalOcean DNS)', collect, [] as string[])
    .option('--no-redirect', 'keep answering plain http on port 80')
    .option('--off', 'take HTTPS off again: the 443 rule, the redirect and the certificate plumb made go (the A records stay)'))
    .action((group, { json, quiet, domain, redirect, off }) =>
      off === true
        ? output(
            { json, quiet },
            async (ctx) => {
              if (domain.length > 0) throw new ValidationError('give --domain or --off, not both', `plumb lb https ${group} --off`);
              if (redirect === false) throw new ValidationError('--no-redirect does nothing with --off (the redirect goes with HTTPS)', `plumb lb https ${group} --off`);
              return (await import('../commands/lb-https.js')).lbHttpsOff(group, ctx);
            },
            async (r) => (await import('../commands/lb-https.js')).lbHttpsOffText(r),
          )
        : output(
            { json, quiet },
            async (ctx) => (await import('../commands/lb-https.js')).lbHttps({ group, domains: domain, redirect }, ctx),
            async (r) => (await import('../commands/lb-https.js')).lbHttpsText(r),
          ),
    );
  helpFooter(https, ['plumb lb https web --domain api.example.com', 'plumb lb https web -d example.com -d www.example.com --no-redirect', 'plumb lb https web --off'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);

  const destroy = outputFlags(lb
    .command('destroy')
    .argument('<group>', 'the group whose balancer goes')
    .description("delete the group's load balancer, the certificates `plumb lb https` made for it and every A record pointing at its address (the droplets stay)")
    .addOption(yesFlag()))
    .action((group, o) =>
      output(
        o,
        async (ctx) => {
          await confirm(o, `destroy the load balancer of ${group}`, `Destroy the load balancer of group ${group}? Its address stops answering (the droplets stay). [y/N]`);
          return (await import('../commands/lb.js')).lbDestroy(group, ctx);
        },
        async (r) => (await import('../commands/lb.js')).lbDestroyText(r),
      ),
    );
  helpFooter(destroy, ['plumb lb destroy web', 'plumb lb destroy web --yes'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL']);
}
