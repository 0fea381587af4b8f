import type { Command } from '@commander-js/extra-typings';
import { EXIT, GROUP_PROVISION_MAX, range } from '@plumb/shared/core';
import { collect, outputFlags, wholeNumber } from './flags.js';
import { helpFooter } from './help.js';
import { output } from './run.js';
import { seconds } from '../output/format.js';
import type { GroupProvisionResult } from '../commands/group.js';
import type { ProvisionResult } from '../commands/provision.js';

export async function text(made: ProvisionResult | GroupProvisionResult): Promise<string> {
  if (!Array.isArray(made)) return one(made);
  const synced = made[0]?.synced;
  // The sync's text lives with its work, loaded only when a group was synced (`--help` stays light).
  const syncText = synced ? (await import('../commands/group-sync.js')).syncText : undefined;
  return [...made.map(one), ...(synced && syncText ? [syncText(synced)] : [])].join('\n');
}

/** provision's summary of a droplet; adopt prints the same. */
export function one(r: Omit<ProvisionResult, 'cloudInit'>): string {
  return [
    `droplet ${r.droplet.name} (id ${r.droplet.id}) is ready at ${r.droplet.ipv4} in ${seconds(r.tookMs)}`,
    `  agent ${r.agentVersion}, enrolled; certificate pinned ${r.droplet.fingerprint?.slice(0, 16)}…`,
    `  swap: ${r.swap ? `${(r.swap.bytes / 1024 ** 3).toFixed(1)} GiB at ${r.swap.path}, ${r.swap.enabled ? 'enabled' : 'created, not enabled'}` : 'none'}`,
    r.example ? `  the example API answers at http://${r.droplet.ipv4}/ and ${r.example.url}` : `  nothing is deployed yet: plumb deploy DIR --name NAME`,
  ].join('\n');
}

export function register(program: Command) {
  const command = outputFlags(program
    .command('provision')
    .description('create a droplet with R, plumber, nginx, a firewall and the plumb agent')
    .option('--name <name>', 'droplet name (default: plumb-XXXXXX)')
    .option('--region <slug>', 'DigitalOcean region', 'sfo3')
    .option('--size <slug>', 'droplet size', 's-1vcpu-1gb')
    .option('--image <slug>', 'image (Debian 13 is what plumb is built for)', 'debian-13-x64')
    .option('--ssh-key <fingerprint|name>', 'an SSH key of your DigitalOcean account, for root login')
    .option('--tag <tag>', 'an extra tag (repeatable)', collect, [] as string[])
    .option('--example', 'also deploy the example API "hello", served at /')
    .option('--close-ssh', 'keep SSH (22) closed in the firewall: only 80, 443 and the agent port (plumb firewall open-ssh opens it)')
    .option('--agent-url <url>', 'a mirror the droplet downloads the agent package from (default: plumb sends it; PLUMB_AGENT_URL)')
    .option('--group <group>', 'make the droplet(s) members of a group (a DigitalOcean tag; see plumb lb)')
    .option('--count <n>', `with --group: how many droplets, made at once (at most ${GROUP_PROVISION_MAX})`, wholeNumber(range(1, GROUP_PROVISION_MAX))))
    .action(({ tag, json, quiet, group, ...o }) =>
      output(
        { json, quiet },
        async (ctx): Promise<ProvisionResult | GroupProvisionResult> =>
          group === undefined ? (await import('../commands/provision.js')).provision({ ...o, tags: tag }, ctx) : (await import('../commands/group.js')).provisionGroup({ ...o, group, tags: tag }, ctx),
        text,
        // The droplets are made either way; one that could not get the group's APIs is a failure to see.
        (made) => (Array.isArray(made) && made[0]?.synced?.ok === false ? EXIT.failure : EXIT.ok),
      ),
    );
  helpFooter(command, ['plumb provision --example', 'plumb provision --name api-1 --region ams3 --ssh-key my-laptop', 'plumb provision --group web --count 3'], ['DIGITALOCEAN_ACCESS_TOKEN', 'PLUMB_DIGITALOCEAN_API_URL', 'PLUMB_AGENT_URL']);
}
