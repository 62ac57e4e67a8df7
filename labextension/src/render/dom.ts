/**
 * DOM building blocks of the event rows: elements, preformatted text, folds, diffs and
 * Markdown. Text goes into the DOM as text nodes; only Markdown goes through `innerHTML`,
 * and always through the sanitizer first.
 */
import { IRenderContext } from './context';
import { markdownToHTML } from './markdown';
import {
  DIFF_OPEN_LINES,
  FOLD_LINES,
  clip,
  outputLineCount,
  stripAnsi
} from './text';

export type Child = Node | string | null | undefined | false;

/** A DOM element with classes and children (strings become text nodes). */
export function h(
  tag: string,
  className: string = '',
  ...children: Child[]
): HTMLElement {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    node.appendChild(
      typeof child === 'string' ? document.createTextNode(child) : child
    );
  }
  return node;
}

/** Agent text as Markdown (raw HTML escaped, then sanitized). */
export function markdown(text: string, ctx: IRenderContext): HTMLElement {
  const node = h('div', 'jp-convo-markdown jp-RenderedHTMLCommon');
  node.innerHTML = markdownToHTML(text, html => ctx.sanitize(html));
  return node;
}

/** Preformatted plain text (ANSI codes stripped, clipped at the output limit). */
export function pre(text: string, className = ''): HTMLElement {
  return h('pre', className, clip(stripAnsi(text)));
}

export function code(text: string): HTMLElement {
  return h('code', '', text);
}

export function label(text: string): HTMLElement {
  return h('span', 'jp-convo-label', text);
}

export function italic(text: string): HTMLElement {
  return h('i', '', text);
}

/** `body` in a `<details>`: open when short (or when `open` says so). */
export function foldable(
  summary: string,
  body: Node,
  lines: number,
  open?: boolean
): HTMLElement {
  const details = h('details', '', h('summary', '', summary), body);
  (details as HTMLDetailsElement).open =
    open === undefined ? lines <= FOLD_LINES : open;
  return details;
}

/** Preformatted output, folded when long; null for empty text. */
export function textBlock(
  text: string,
  title: string,
  className = ''
): HTMLElement | null {
  if (!text) {
    return null;
  }
  const lines = outputLineCount(text);
  return foldable(`${title} (${lines} lines)`, pre(text, className), lines);
}

/** A unified diff with added, removed and hunk lines coloured. */
export function diffBlock(diff: string): HTMLElement {
  const lines = stripAnsi(diff).split(/\r?\n/);
  if (lines.length && lines[lines.length - 1] === '') {
    lines.pop(); // splitlines() semantics: no empty last line
  }
  const body = h('pre', 'jp-convo-diff');
  lines.forEach((line, index) => {
    let css = '';
    if (line.startsWith('+') && !line.startsWith('+++')) {
      css = 'jp-convo-diff-add';
    } else if (line.startsWith('-') && !line.startsWith('---')) {
      css = 'jp-convo-diff-del';
    } else if (line.startsWith('@@')) {
      css = 'jp-convo-diff-hunk';
    }
    body.appendChild(
      css ? h('span', css, line) : document.createTextNode(line)
    );
    if (index < lines.length - 1) {
      body.appendChild(document.createTextNode('\n'));
    }
  });
  const count = lines.length;
  return foldable(
    `diff (${count} lines)`,
    body,
    count,
    count <= DIFF_OPEN_LINES
  );
}
