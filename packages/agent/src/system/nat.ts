import { execa } from 'execa';
import { PlumbError } from '@plumb/shared';
import { writeFileAtomic } from '../atomic-file.js';
import { layout } from './layout.js';

/**
 * Puts the agent's nftables table in place: the file first (so an operator can read what is
 * live), then `nft -f`, which replaces the whole table in one transaction. Connections already
 * open keep the worker they were sent to (conntrack), so this never cuts a request.
 */
export async function applyNat(ruleset: string): Promise<void> {
  await writeFileAtomic(layout.natRules, ruleset, 0o644);
  const result = await execa('nft', ['-f', layout.natRules], { reject: false, timeout: 30_000 });
  if (result.exitCode !== 0) {
    const missing = result.exitCode === undefined;
    throw new PlumbError(
      'NFTABLES',
      missing ? 'nft is not installed on the droplet' : `nft refused the agent's rules: ${result.stderr.trim().split('\n')[0] ?? ''}`,
      missing ? 'install it as root (apt-get install nftables), then try again' : 'nothing was changed; this is a bug in plumb-agent, please report it',
    );
  }
}
