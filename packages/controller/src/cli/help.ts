import type { CommandUnknownOpts } from '@commander-js/extra-typings';

/** The environment variables plumb reads, and what for. */
export const ENVIRONMENT = {
  DIGITALOCEAN_ACCESS_TOKEN: 'your DigitalOcean API token (needed to create, list and delete droplets)',
  PLUMB_DIGITALOCEAN_API_URL: 'another DigitalOcean API base URL (the lab\'s stand-in)',
  XDG_CONFIG_HOME: 'where plumb keeps its key and known droplets: $XDG_CONFIG_HOME/plumb (default ~/.config/plumb)',
  PLUMB_AGENT_URL: 'a mirror the droplet downloads the agent package from (as --agent-url)',
  PLUMB_ACME_SERVER: "another ACME server than Let's Encrypt (the lab's pebble)",
  PLUMB_DNS_SERVER: 'HOST[:PORT] of the DNS server the domain check asks (default: the system\'s)',
  PLUMB_SSH_CONFIG: 'an ssh_config file `plumb adopt` uses instead of ~/.ssh/config (known_hosts, keys)',
} as const;
export type EnvVar = keyof typeof ENVIRONMENT;

/** Every command reads its config directory from here. */
const ALWAYS: EnvVar[] = ['XDG_CONFIG_HOME'];

/** Examples and the environment a command reads, shown after its --help. */
export function helpFooter<C extends CommandUnknownOpts>(command: C, examples: string[], env: EnvVar[] = []): C {
  const vars = [...new Set([...env, ...ALWAYS])];
  const width = Math.max(...vars.map((v) => v.length));
  return command.addHelpText(
    'after',
    [
      '',
      'Examples:',
      ...examples.map((e) => `  $ ${e}`),
      '',
      'Environment:',
      ...vars.map((v) => `  ${v.padEnd(width)}  ${ENVIRONMENT[v]}`),
    ].join('\n'),
  );
}
