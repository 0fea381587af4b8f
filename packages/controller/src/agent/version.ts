import { compareVersions, PlumbError, PROTOCOL_VERSION, type HelloHead } from '@plumb/shared';
import { PLUMB_VERSION } from '../plumb-version.js';

export { PLUMB_VERSION };

/** The agent speaks another protocol than this plumb: the message says which side to upgrade. */
export class AgentVersionError extends PlumbError {
  override name = 'AgentVersionError';
}

/**
 * Null when this plumb can talk to the agent that said `head`; otherwise the error every command
 * gives instead of a parse error: an older agent is upgraded with `plumb upgrade`, a newer one
 * calls for a newer plumb here.
 */
export function versionSkew(head: HelloHead, droplet: string, plumbVersion = PLUMB_VERSION, protocol = PROTOCOL_VERSION): AgentVersionError | null {
  if (head.protocol === protocol) return null;
  const agent = `the agent on ${droplet} is version ${head.agentVersion} (protocol ${head.protocol})`;
  if (head.protocol < protocol) {
    return new AgentVersionError(
      'AGENT_OUTDATED',
      `${agent}, older than this plumb ${plumbVersion} (protocol ${protocol})`,
      head.protocol === 0 ? `this agent predates \`plumb upgrade\`: destroy the droplet (\`plumb destroy ${droplet}\`) and provision it again` : `run \`plumb upgrade --droplet ${droplet}\``,
    );
  }
  return new AgentVersionError(
    'AGENT_NEWER',
    `${agent}, newer than this plumb ${plumbVersion} (protocol ${protocol})`,
    `upgrade plumb on this machine, or run \`plumb upgrade --droplet ${droplet} --force\` to put agent ${plumbVersion} back`,
  );
}

/** What `plumb status` says of an agent's version next to this plumb's. */
export function upgradeAvailable(agentVersion: string, plumbVersion = PLUMB_VERSION): string | null {
  try {
    return compareVersions(plumbVersion, agentVersion) > 0 ? plumbVersion : null;
  } catch {
    return null;
  }
}
