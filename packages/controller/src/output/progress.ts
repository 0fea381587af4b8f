import type { Progress } from '../context.js';
import { seconds } from './format.js';
import { terminalSafe } from './terminal.js';

/**
 * Shows a long command's steps: on a terminal a spinner on the current step and a tick on each
 * finished one; otherwise (CI, a pipe, --json) one plain line per step on stderr.
 */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr, opts: { quiet?: boolean } = {}): Reporter {
  if (opts.quiet) return { progress: () => {}, stop: () => {}, hold: (ask) => ask() };
  const reporter = rawProgressReporter(stream);
  // Steps and details may carry a droplet's text (installer output): escaped before they are drawn.
  return { ...reporter, progress: (p) => reporter.progress({ ...p, step: terminalSafe(p.step), ...(p.detail ? { detail: terminalSafe(p.detail) } : {}) }) };
}

/** `hold`: runs a question at the terminal with the spinner stilled, so it does not draw over it. */
interface Reporter {
  progress: Progress;
  stop(): void;
  hold<T>(ask: () => Promise<T>): Promise<T>;
}

function rawProgressReporter(stream: NodeJS.WriteStream): Reporter {
  const started = Date.now();
  const elapsed = (since = started) => seconds(Date.now() - since, 's');
  if (!stream.isTTY) {
    let lastStep = '';
    return {
      progress: ({ step, detail }) => {
        if (step !== lastStep) stream.write(`[${elapsed().padStart(7)}] ${step}\n`);
        else if (detail) stream.write(`[${elapsed().padStart(7)}]   ${detail}\n`);
        lastStep = step;
      },
      stop: () => {},
      hold: (ask) => ask(),
    };
  }
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let current: { step: string; detail?: string; since: number } | undefined;
  let frame = 0;
  let held = false;
  const draw = () => {
    if (!current || held) return;
    const detail = current.detail ? `: ${current.detail}` : '';
    stream.write(`\r\x1b[K${frames[frame++ % frames.length]} ${current.step}${detail} (${elapsed(current.since)})`);
  };
  const timer = setInterval(draw, 100);
  timer.unref();
  const finish = () => {
    if (current) stream.write(`\r\x1b[K✔ ${current.step} (${elapsed(current.since)})\n`);
    current = undefined;
  };
  return {
    progress: ({ step, detail, done }) => {
      if (current?.step !== step) finish();
      if (done) return;
      current = current?.step === step ? { ...current, ...(detail ? { detail } : {}) } : { step, since: Date.now(), ...(detail ? { detail } : {}) };
      draw();
    },
    hold: async (ask) => {
      if (current) stream.write('\r\x1b[K');
      held = true;
      try {
        return await ask();
      } finally {
        held = false;
      }
    },
    stop: () => {
      clearInterval(timer);
      if (current) stream.write(`\r\x1b[K✖ ${current.step} (${elapsed(current.since)})\n`);
      current = undefined;
    },
  };
}
