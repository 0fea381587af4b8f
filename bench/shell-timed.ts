import { execa } from 'execa';

/**
 * Wall times of short commands as a user's shell sees them: bash runs them in turns, `rounds`
 * times, stamping each with $EPOCHREALTIME; stdout and stderr go to /dev/null. Timed from a
 * benchmark's own process instead, each run would also pay forking that process (hundreds of MiB
 * once it holds a big bundle) and execa's own setup: ~40-80 ms here that no user pays.
 * Returns each command's times in ms, in the order given; a command that fails ends the run.
 */
export async function shellTimes(commands: string[][], rounds: number, env: Record<string, string>): Promise<number[][]> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines = commands.map((argv, i) => `s=$EPOCHREALTIME; ${argv.map(quote).join(' ')} >/dev/null 2>&1 || { echo "failed: command ${i}" >&2; exit 1; }; e=$EPOCHREALTIME; echo "${i} $s $e"`);
  const script = `for r in $(seq ${rounds}); do\n${lines.join('\n')}\ndone`;
  const { stdout } = await execa('bash', ['-c', script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', ...env }, extendEnv: false });
  const times: number[][] = commands.map(() => []);
  for (const line of stdout.split('\n').filter(Boolean)) {
    const [i, s, e] = line.split(' ');
    times[Number(i)]!.push((Number(e) - Number(s)) * 1000);
  }
  return times;
}
