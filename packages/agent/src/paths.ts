/** Where the agent keeps things on the droplet; overridable for tests that run it elsewhere. */
export interface AgentPaths {
  config: string;
  stateDir: string;
}

export function agentPaths(env: NodeJS.ProcessEnv = process.env): AgentPaths {
  return {
    config: env['PLUMB_AGENT_CONFIG'] ?? '/etc/plumb-agent/config.json',
    stateDir: env['PLUMB_AGENT_STATE_DIR'] ?? '/var/lib/plumb',
  };
}
