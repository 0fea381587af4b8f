/**
 * Text from a droplet (an API's log lines, its output in a failed deploy, remote error messages)
 * reaches the operator's terminal. An API, or whoever it logs for, controls that text: escape
 * sequences in it could move the cursor, rewrite what is on screen or set the window title. Every
 * control character but tab is shown as a visible escape instead (`\x1b`), so the line reads as
 * what it is.
 */
// C0 controls except tab, DEL, C1 controls, and the bidi overrides that reorder what is shown.
const UNSAFE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
