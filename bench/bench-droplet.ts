import type { Lab } from '../test/lab/lab.js';
import { plumbUser, type PlumbRun, type PlumbUser } from '../test/e2e/plumb.js';

/** What every benchmark starts from: a user of the lab, and a provisioned s-2vcpu-4gb droplet. */
export interface BenchDroplet {
  user: PlumbUser;
  /** Runs plumb; a non-zero exit ends the benchmark with plumb's own message. */
  run(args: string[]): Promise<PlumbRun>;
  id: number;
  address: string;
}

export async function benchDroplet(lab: Lab, name = 'bench'): Promise<BenchDroplet> {
  const user = await plumbUser(lab);
  const run = async (args: string[]) => {
    const result = await user.plumb(args);
    if (result.exitCode !== 0) throw new Error(`plumb ${args.join(' ')}: ${result.stderr}`);
    return result;
  };
  const { droplet } = JSON.parse((await run(['provision', '--name', name, '--size', 's-2vcpu-4gb', '--json'])).stdout) as { droplet: { id: number; ipv4: string } };
  return { user, run, id: droplet.id, address: droplet.ipv4 };
}
