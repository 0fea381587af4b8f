import { PlumbError } from '@plumb/shared';
import { terminalSafe } from '../output/terminal.js';
import type { Chooser } from '../local/droplets-state.js';
import { askLine } from './confirm.js';

/**
 * Asks at the terminal which of several droplets a command is for (a number from the list, or a
 * name). Only offered when stdin is a terminal; elsewhere the command stops with DROPLET_AMBIGUOUS.
 */
export const chooseOnTerminal: Chooser = async (names) => {
  const list = names.map((n, i) => `  ${i + 1}) ${terminalSafe(n)}\n`).join('');
  const answer = (await askLine(`plumb knows ${names.length} droplets:\n${list}Which one (number or name)? `)).trim();
  const picked = /^\d+$/.test(answer) ? names[Number(answer) - 1] : names.find((n) => n === answer);
  if (picked === undefined) throw new PlumbError('DROPLET_UNKNOWN', `"${answer}" is none of the droplets listed`, `answer 1 to ${names.length}, or give --droplet NAME`);
  return picked;
};
