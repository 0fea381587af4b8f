import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { NFT_COMMAND_TIMEOUT_MS } from '@plumb/shared';

/** nft read the command and refused it: `detail` is nft's first error line. The session stays usable. */
export class NftRefused extends Error {
  override name = 'NftRefused';
  constructor(readonly detail: string) {
    super(`nft refused the command: ${detail}`);
  }
}

/** The session could not run the command (nft would not start, died, or did not answer): whether it ran is unknown. */
export class NftSessionLost extends Error {
  override name = 'NftSessionLost';
}

interface Pending {
  sentinel: string;
  /** Waits for the output too (a `list table`): returns it, else ''. */
  output: boolean;
  resolve(output: string): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * One long-lived `nft -i` (nft's interactive mode, reading commands on stdin): a command costs a
 * line written to a pipe, not a process (tens of ms of a loaded droplet's CPU each, on a deploy's
 * way to its answer). Each line is one buffer to nft, so one transaction, as `nft -f` makes of a
 * file. nft says nothing on success, so each command is followed by a line nft cannot parse,
 * carrying a number: its error on stderr (unbuffered, in order) closes the command, and any error
 * before it is the command's. A listing is read from stdout, which nft flushes after each print.
 * One command at a time; nft's cache follows the kernel's generation, so a change by another
 * process (`nft flush ruleset`, ufw) is seen.
 */
export class NftSession {
  private readonly child: ChildProcessWithoutNullStreams;
  private stderr = '';
  private stdout = '';
  private pending: Pending | undefined;
  private ended: Error | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private sequence = 0;
  /** Commands run to their end (refused ones too): a session that never finished one is not to be tried again. */
  completed = 0;

  constructor(argv: readonly string[] = ['nft', '-i']) {
    const [command = 'nft', ...args] = argv;
    // HOME: nft reads and, when it ends, writes its history there; /nonexistent keeps both away.
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, HOME: '/nonexistent' } });
    this.child.stdout.setEncoding('utf8').on('data', (text: string) => {
      this.stdout += text;
      this.settle();
    });
    this.child.stderr.setEncoding('utf8').on('data', (text: string) => {
      this.stderr += text;
      this.settle();
    });
    // A write after nft ended (EPIPE) is reported by 'close' below.
    this.child.stdin.on('error', () => undefined);
    // Never what keeps the agent's process alive: a pending command's timer does, while it waits.
    this.child.unref();
    for (const pipe of [this.child.stdin, this.child.stdout, this.child.stderr]) (pipe as unknown as { unref?: () => void }).unref?.();
    this.child.on('error', (err) => this.end(new NftSessionLost(`nft -i could not start: ${err.message}`)));
    this.child.on('close', (code, signal) => {
      const said = this.stderr.trim().split('\n')[0];
      this.end(new NftSessionLost(`nft -i ended (${signal ?? `exit ${code}`})${said ? `: ${said}` : ''}`));
    });
  }

  /** False once nft ended or was stopped: a new session is needed. */
  get alive(): boolean {
    return this.ended === undefined;
  }

  /**
   * Runs one command line; with `output`, returns what it printed (a listing). Rejects with
   * NftRefused when nft refused it (nothing of it applied: one transaction), with NftSessionLost
   * when the session ended or did not answer within NFT_COMMAND_TIMEOUT_MS (it is stopped then).
   */
  run(line: string, opts: { output?: boolean; timeoutMs?: number } = {}): Promise<string> {
    if (line.includes('\n')) return Promise.reject(new Error('an nft command is one line'));
    const run = this.tail.then(() => this.send(line, opts.output ?? false, opts.timeoutMs ?? NFT_COMMAND_TIMEOUT_MS));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Stops nft (by signal: it writes no history then). */
  close(): void {
    this.end(new NftSessionLost('the nft session was closed'));
  }

  private send(line: string, output: boolean, timeoutMs: number): Promise<string> {
    if (this.ended) return Promise.reject(this.ended);
    const sentinel = `plumb-sync-${++this.sequence}`;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => this.end(new NftSessionLost(`nft -i did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
      this.pending = { sentinel, output, resolve, reject, timer };
      this.child.stdin.write(`${line}\n${sentinel}\n`);
    });
  }

  /** Finishes the pending command once nft has answered its sentinel (and printed its listing). */
  private settle(): void {
    const pending = this.pending;
    if (!pending) return;
    const mark = `\n${pending.sentinel}\n`;
    const at = `\n${this.stderr}`.indexOf(mark);
    if (at < 0) return;
    // The sentinel's own error: "Error: ...", the line itself, then a line of carets under it.
    const caretsEnd = this.stderr.indexOf('\n', at + mark.length - 1);
    if (caretsEnd < 0) return;
    const before = this.stderr.slice(0, at).split('\n');
    // What follows the command's own errors: the sentinel's "Error: ..." line, and the '' after its newline.
    before.splice(-2);
    const refused = before.find((l) => l.includes('Error:'));
    let listing = '';
    if (pending.output && refused === undefined) {
      // nft flushed the listing before it read the sentinel, but it comes on another pipe: wait for its end.
      const start = this.stdout.indexOf('table ');
      const end = start < 0 ? -1 : this.stdout.indexOf('\n}\n', start);
      if (end < 0) return;
      listing = this.stdout.slice(start, end + 2);
    }
    this.stderr = this.stderr.slice(caretsEnd + 1);
    this.stdout = '';
    this.pending = undefined;
    clearTimeout(pending.timer);
    this.completed++;
    if (refused !== undefined) pending.reject(new NftRefused(refused.trim()));
    else pending.resolve(listing);
  }

  private end(err: NftSessionLost): void {
    if (this.ended) return;
    this.ended = err;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(err);
    }
  }
}
