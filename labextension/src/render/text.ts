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

// Python's str.splitlines() boundaries.
// eslint-disable-next-line no-control-regex
const LINE_BREAKS = /\r\n|\r|\n|\v|\f|\x1c|\x1d|\x1e|\x85|\u2028|\u2029/;

/** Lines of an output as the notebook widget counts them: a trailing newline ends the
 * last line rather than starting another. */
export function outputLineCount(text: string): number {
  const parts = text.replace(/\n+$/, '').split(LINE_BREAKS);
  if (parts[parts.length - 1] === '') {
    parts.pop(); // splitlines() makes no empty last line
  }
  return parts.length || 1;
}

/** Lines in `text` the way the notebook widget counts source (newlines + 1). */
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
