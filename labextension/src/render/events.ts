/**
 * Events as DOM rows, with the notebook widget's semantics (jupyter_convo/kernel/render.py):
 * agent text is Markdown with raw HTML escaped; tool output is plain text (ANSI stripped,
 * long outputs folded); only the agent's Python rich outputs keep HTML (sanitized) or
 * images; diffs are coloured; actions waiting for confirmation say so.
 *
 * Text goes into the DOM as text nodes; only Markdown and rich HTML outputs go through
 * `innerHTML`, and always through the sanitizer first.
 */
import { IEvent, IPythonError, MimeBundle } from '../types';
import { markdownToHTML } from './markdown';
import { imageSource, mimeText, preferredMime } from './mime';
import {
  DIFF_OPEN_LINES,
  FOLD_LINES,
  clip,
  lineCount,
  outputLineCount,
  stripAnsi
} from './text';

/** Agent states worth a row of their own; the others only move the badge. */
export const NOTABLE_STATES = new Set([
  'finished',
  'error',
  'stopped',
  'paused',
  'rate_limited'
]);
/** Kinds that never get a row: they feed the header (metrics, title). */
export const HEADER_ONLY_KINDS = new Set(['llm_call', 'title']);

/** What rendering needs from JupyterLab: its HTML sanitizer. */
export interface IRenderContext {
  sanitize(html: string): string;
}

type Child = Node | string | null | undefined | false;

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

function markdown(text: string, ctx: IRenderContext): HTMLElement {
  const node = h('div', 'jp-convo-markdown jp-RenderedHTMLCommon');
  node.innerHTML = markdownToHTML(text, html => ctx.sanitize(html));
  return node;
}

/** Preformatted plain text (ANSI codes stripped, clipped at the output limit). */
export function pre(text: string, className = ''): HTMLElement {
  return h('pre', className, clip(stripAnsi(text)));
}

function code(text: string): HTMLElement {
  return h('code', '', text);
}

function label(text: string): HTMLElement {
  return h('span', 'jp-convo-label', text);
}

function italic(text: string): HTMLElement {
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

/** The richest safe form of a display bundle; null when nothing in it can be shown. */
export function mimeBlock(
  bundle: MimeBundle,
  ctx: IRenderContext
): HTMLElement | null {
  const mime = preferredMime(bundle);
  if (mime === null) {
    return null;
  }
  const value = bundle[mime];
  if (mime.startsWith('image/')) {
    const img = h('img', 'jp-convo-image') as HTMLImageElement;
    img.alt = mime === 'image/svg+xml' ? 'figure' : 'plot';
    img.src = imageSource(mime, value);
    return img;
  }
  if (mime === 'text/html') {
    const node = h('div', 'jp-convo-rich jp-RenderedHTMLCommon');
    node.innerHTML = ctx.sanitize(mimeText(value));
    return node;
  }
  if (mime === 'text/markdown') {
    return markdown(mimeText(value), ctx);
  }
  return pre(mimeText(value));
}

function row(css: string, event: IEvent, ...children: Child[]): HTMLElement {
  const node = h('div', `jp-convo-row ${css}`, ...children);
  node.dataset.eventId = String(event.id);
  node.dataset.kind = event.kind;
  return node;
}

/** The thought attached to an action, and its confirmation state. */
function actionExtras(event: IEvent, ctx: IRenderContext): Child[] {
  const parts: Child[] = [];
  if (event.thought) {
    parts.push(markdown(event.thought, ctx));
  }
  if (event.confirmation === 'awaiting') {
    const risk = event.security_risk ?? 'unknown';
    parts.push(
      h(
        'div',
        'jp-convo-awaiting-note',
        h('b', '', 'Waiting for your confirmation'),
        ` (risk: ${risk})`
      )
    );
  } else if (
    event.confirmation === 'confirmed' ||
    event.confirmation === 'rejected'
  ) {
    parts.push(h('div', 'jp-convo-muted', event.confirmation));
  }
  return parts;
}

function actionCss(event: IEvent): string {
  return event.confirmation === 'awaiting'
    ? 'jp-convo-awaiting'
    : 'jp-convo-agent';
}

const SAFE_IMAGE_URL = /^(data:image\/|https:\/\/|http:\/\/)/;

type Renderer = (event: IEvent, ctx: IRenderContext) => HTMLElement;

const RENDERERS: Record<string, Renderer> = {
  message: (e, ctx) => {
    const user = e.source === 'user';
    const images = (e.image_urls ?? [])
      .filter(url => SAFE_IMAGE_URL.test(String(url)))
      .map(url => {
        const img = h('img', 'jp-convo-image') as HTMLImageElement;
        img.alt = 'attached image';
        img.src = url;
        return img;
      });
    return row(
      user ? 'jp-convo-user' : 'jp-convo-agent',
      e,
      label(user ? 'You' : 'Agent'),
      markdown(e.text ?? '', ctx),
      ...images
    );
  },
  think: (e, ctx) =>
    row(
      'jp-convo-agent jp-convo-muted',
      e,
      foldable('Thought', markdown(e.thought ?? '', ctx), 0, false)
    ),
  finish: (e, ctx) =>
    row('jp-convo-agent', e, label('Finished'), markdown(e.message ?? '', ctx)),
  command: (e, ctx) =>
    row(
      actionCss(e),
      e,
      label('$'),
      code(e.command ?? ''),
      ...actionExtras(e, ctx)
    ),
  command_output: e => {
    const exit = e.exit_code;
    const notes: string[] = [];
    if (e.timed_out) {
      notes.push('timed out');
    }
    if (e.truncated) {
      notes.push('output truncated');
    }
    const status =
      (exit === null || exit === undefined ? 'no exit code' : `exit ${exit}`) +
      (notes.length ? `, ${notes.join(', ')}` : '');
    const output = e.output ?? '';
    const failed = !(exit === 0 || exit === null || exit === undefined);
    return row(
      failed ? 'jp-convo-error' : 'jp-convo-env',
      e,
      output ? textBlock(output, `output, ${status}`) : italic(status)
    );
  },
  python: (e, ctx) => {
    const source = e.code ?? '';
    return row(
      actionCss(e),
      e,
      foldable('Python', pre(source), lineCount(source)),
      ...actionExtras(e, ctx)
    );
  },
  python_output: (e, ctx) => {
    const parts: Child[] = [
      textBlock(e.stdout ?? '', 'stdout'),
      textBlock(e.stderr ?? '', 'stderr')
    ];
    for (const bundle of e.display_data ?? []) {
      parts.push(mimeBlock(bundle, ctx));
    }
    if (e.result) {
      parts.push(mimeBlock(e.result, ctx));
    }
    const error =
      e.error && typeof e.error === 'object' ? (e.error as IPythonError) : null;
    if (error) {
      const trace =
        (error.traceback ?? []).join('\n') || `${error.ename}: ${error.evalue}`;
      parts.push(textBlock(trace, `${error.ename}: ${error.evalue}`));
    }
    if (e.timed_out) {
      parts.push(italic('timed out'));
    }
    const shown = parts.filter(Boolean);
    return row(
      error ? 'jp-convo-error' : 'jp-convo-env',
      e,
      ...(shown.length ? shown : [italic('no output')])
    );
  },
  file_read: (e, ctx) =>
    row(
      actionCss(e),
      e,
      label('Read'),
      code(e.path ?? ''),
      ...actionExtras(e, ctx)
    ),
  file_content: e => {
    if (e.error) {
      return row('jp-convo-error', e, String(e.error));
    }
    const content = e.content ?? '';
    return row(
      'jp-convo-env',
      e,
      foldable(
        `${e.path ?? ''} (${lineCount(content)} lines)`,
        pre(content),
        0,
        false
      )
    );
  },
  file_edit: (e, ctx) => {
    const verbs: Record<string, string> = {
      create: 'Create',
      str_replace: 'Edit',
      insert: 'Insert into',
      undo: 'Undo'
    };
    return row(
      actionCss(e),
      e,
      label(verbs[String(e.command)] ?? 'Edit'),
      code(e.path ?? ''),
      ...actionExtras(e, ctx)
    );
  },
  file_edit_result: e => {
    if (e.error) {
      return row('jp-convo-error', e, String(e.error));
    }
    const diff = e.diff ?? '';
    return row(
      'jp-convo-env',
      e,
      diff ? diffBlock(diff) : italic(`${e.path ?? ''}: no change`)
    );
  },
  confirmation: e => {
    const verdict = e.confirmed ? 'Confirmed' : 'Rejected';
    const reason = e.reason ? `: ${e.reason}` : '';
    return row(
      'jp-convo-user jp-convo-muted',
      e,
      `${verdict} action ${e.cause}${reason}`
    );
  },
  agent_state: e => {
    const state = String(e.state ?? '');
    const reason = e.reason ? ` (${e.reason})` : '';
    return row(
      state === 'error' ? 'jp-convo-error' : 'jp-convo-muted',
      e,
      `Agent ${state.replace(/_/g, ' ')}${reason}`
    );
  },
  status: e => {
    const status = String(e.status ?? '');
    const message = e.message ? `: ${e.message}` : '';
    return row(
      status === 'ERROR' ? 'jp-convo-error' : 'jp-convo-muted',
      e,
      `Runtime ${status}${message}`
    );
  },
  sandbox: e => {
    if (!e.confined) {
      return row(
        'jp-convo-error jp-convo-sandbox',
        e,
        label('Not confined'),
        e.message || "the agent's tools run unconfined"
      );
    }
    const network = e.network === false ? 'network off' : 'network on';
    const lines = (e.mounts ?? []).map(
      m =>
        `${m.mode.padEnd(6)} ${m.path}${m.source ? ` (from ${m.source})` : ''}`
    );
    if (e.home) {
      lines.push(`HOME   ${e.home}`);
    }
    const summary = `Sandbox: ${e.mechanism}, ${network}`;
    if (!lines.length) {
      return row('jp-convo-muted jp-convo-sandbox', e, summary);
    }
    const details = h(
      'details',
      '',
      h('summary', '', summary),
      pre(lines.join('\n'))
    );
    return row('jp-convo-muted jp-convo-sandbox', e, details);
  },
  replay_step: e => {
    const verdict = String(e.verdict ?? '');
    const head = `Replay step ${e.step}: ${verdict} (recorded action ${e.recorded_event_id})`;
    return row(
      verdict === 'diverged' ? 'jp-convo-error' : 'jp-convo-muted',
      e,
      label(head),
      e.diff ? diffBlock(e.diff) : null
    );
  },
  replay_summary: e => {
    const diverged = Number(e.diverged ?? 0);
    let text =
      `Replay (${e.mode}): ${e.reproduced} of ${e.steps} steps reproduced, ` +
      `${diverged} diverged, ${e.skipped} skipped`;
    if (e.diverged_steps && e.diverged_steps.length) {
      text += ` (steps ${e.diverged_steps.join(', ')})`;
    }
    if (e.message) {
      text += `: ${e.message}`;
    }
    return row(
      diverged ? 'jp-convo-error' : 'jp-convo-env',
      e,
      label('Replay'),
      text
    );
  },
  error: e =>
    row(
      'jp-convo-error',
      e,
      label('Error'),
      code(e.code ?? ''),
      ` ${e.message ?? ''}`
    )
};

/** Whether an event gets a row (metrics, titles and routine states only feed the header). */
export function hasRow(event: IEvent): boolean {
  if (HEADER_ONLY_KINDS.has(event.kind)) {
    return false;
  }
  if (event.kind === 'agent_state') {
    return NOTABLE_STATES.has(String(event.state));
  }
  return true;
}

/** One event as a row; null for events without a row. */
export function renderEvent(
  event: IEvent,
  ctx: IRenderContext
): HTMLElement | null {
  if (!hasRow(event)) {
    return null;
  }
  const render = RENDERERS[event.kind];
  if (!render) {
    return row('jp-convo-muted', event, event.kind || 'event');
  }
  return render(event, ctx);
}

/**
 * Show on an action's row that the user answered it (the logged action keeps saying
 * "awaiting"; the answer is a later `confirmation` event).
 */
export function markAnswered(actionRow: HTMLElement, confirmed: boolean): void {
  const note = actionRow.querySelector('.jp-convo-awaiting-note');
  if (note) {
    note.replaceWith(
      h('div', 'jp-convo-muted', confirmed ? 'confirmed' : 'rejected')
    );
  }
  actionRow.classList.replace('jp-convo-awaiting', 'jp-convo-agent');
}
