/**
 * Text helpers shared by the renderers (the same limits as jupyter_convo/kernel/render.py).
 */

/** Longer outputs are folded into a `<details>` showing how many lines they hold. */
export const FOLD_LINES = 15;
/** Characters of one output kept on screen (the event keeps all of it). */
export const MAX_OUTPUT_CHARS = 20_000;
/** Diffs up to this many lines start unfolded. */
export const DIFF_OPEN_LINES = 40;

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

/** Terminal colour codes removed: outputs are shown as plain text. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** `text` cut to `limit` characters with a note saying how many were dropped. */
export function clip(text: string, limit: number = MAX_OUTPUT_CHARS): string {
  if (text.length <= limit) {
    return text;
  }
  const dropped = text.length - limit;
  return `${text.slice(0, limit)}\n... (${dropped} more characters)`;
}

/** Lines in `text` the way the notebook widget counts them (newlines + 1). */
export function lineCount(text: string): number {
  let count = 1;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      count++;
    }
  }
  return count;
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#x27;'
};

/** `text` safe to place inside HTML. */
export function escapeHTML(text: string): string {
  return text.replace(/[&<>"']/g, c => HTML_ESCAPES[c]);
}
