/**
 * Events as DOM rows: the one renderer of the side panel and the notebook widget. Adding
 * an event kind to the schema (events/schema.py) makes the generated types grow, and this
 * file stops compiling until `RENDERERS` has the new kind: that is the whole front-end
 * side of a new kind.
 *
 * Semantics: agent text is Markdown with raw HTML escaped; tool output is plain text (ANSI
 * stripped, long outputs folded); only the agent's Python rich outputs keep HTML (through
 * the host's rendermime, or sanitized) or images; diffs are coloured; actions waiting for
 * confirmation say so.
 */
import { EventKind, EventOf, IActionEvent, IEvent } from '../types';
import { IRenderContext } from './context';
import {
  Child,
  code,
  diffBlock,
  foldable,
  h,
  italic,
  label,
  markdown,
  pre,
  textBlock
} from './dom';
import { mimeBlock } from './mime';
import { lineCount } from './text';

export { IRenderContext } from './context';
export { h } from './dom';

/** Agent states worth a row of their own; the others only move the badge. */
export const NOTABLE_STATES = new Set([
  'finished',
  'error',
  'stopped',
  'paused',
  'rate_limited'
]);

/** Kinds that never get a row: they feed the header (metrics, title). */
type HeaderOnlyKind = 'llm_call' | 'title';
export const HEADER_ONLY_KINDS = new Set<string>(['llm_call', 'title']);

function row(css: string, event: IEvent, ...children: Child[]): HTMLElement {
  const node = h('div', `jp-convo-row ${css}`, ...children);
  node.dataset.eventId = String(event.id);
  node.dataset.kind = event.kind;
  return node;
}

/** Why the security analyzer rated an action higher than the agent did, if it did. */
function riskReason(event: IActionEvent): string {
  return event.risk_reason ? `: ${event.risk_reason}` : '';
}

/** The thought attached to an action, its risk reason and confirmation state. */
function actionExtras(event: IActionEvent, ctx: IRenderContext): Child[] {
  const parts: Child[] = [];
  if (event.thought) {
    parts.push(markdown(event.thought, ctx));
  }
  if (event.confirmation === 'awaiting') {
    parts.push(
      h(
        'div',
        'jp-convo-awaiting-note',
        h('b', '', 'Waiting for your confirmation'),
        ` (risk: ${event.security_risk ?? 'unknown'}${riskReason(event)})`
      )
    );
  } else if (event.risk_reason) {
    parts.push(
      h(
        'div',
        'jp-convo-muted jp-convo-risk',
        `risk ${event.security_risk ?? 'unknown'}${riskReason(event)}`
      )
    );
  }
  if (event.confirmation === 'confirmed' || event.confirmation === 'rejected') {
    parts.push(h('div', 'jp-convo-muted', event.confirmation));
  }
  return parts;
}

function actionCss(event: IActionEvent): string {
  return event.confirmation === 'awaiting'
    ? 'jp-convo-awaiting'
    : 'jp-convo-agent';
}

/** An action's row: a label, what it acts on, its thought and confirmation state. */
function actionRow(
  event: IActionEvent,
  ctx: IRenderContext,
  ...body: Child[]
): HTMLElement {
  return row(actionCss(event), event, ...body, ...actionExtras(event, ctx));
}

const SAFE_IMAGE_URL = /^(data:image\/|https:\/\/|http:\/\/)/;

const FILE_VERBS: Record<string, string> = {
  create: 'Create',
  str_replace: 'Edit',
  insert: 'Insert into',
  undo: 'Undo'
};

type Renderers = {
  [K in Exclude<EventKind, HeaderOnlyKind>]: (
    event: EventOf<K>,
    ctx: IRenderContext
  ) => HTMLElement;
};

/** One renderer per kind that gets a row. */
const RENDERERS: Renderers = {
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
  command: (e, ctx) => actionRow(e, ctx, label('$'), code(e.command ?? '')),
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
    return actionRow(
      e,
      ctx,
      foldable('Python', pre(source), lineCount(source))
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
    const error = e.error;
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
  file_read: (e, ctx) => actionRow(e, ctx, label('Read'), code(e.path ?? '')),
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
  file_edit: (e, ctx) =>
    actionRow(
      e,
      ctx,
      label(FILE_VERBS[String(e.command)] ?? 'Edit'),
      code(e.path ?? '')
    ),
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
  tool_call: (e, ctx) => {
    const where = (e.locations ?? []).map(l => l.path).join(', ');
    const options = (e.options ?? []).map(o => `${o.name} (${o.kind})`);
    return actionRow(
      e,
      ctx,
      label(String(e.tool_kind ?? 'tool')),
      e.title ?? '',
      ...(where ? [' ', code(where)] : []),
      ...(options.length ? [italic(` options: ${options.join(', ')}`)] : [])
    );
  },
  tool_result: e => {
    const failed = e.status === 'failed';
    const parts: Child[] = [];
    if (e.output) {
      parts.push(
        foldable(
          `${e.title || 'output'} (${lineCount(e.output)} lines)`,
          pre(e.output),
          lineCount(e.output)
        )
      );
    }
    if (e.diff) {
      parts.push(diffBlock(e.diff));
    }
    return row(
      failed ? 'jp-convo-error' : 'jp-convo-env',
      e,
      ...(parts.length
        ? parts
        : [italic(`${e.title ?? ''}: ${e.status ?? 'completed'}`)])
    );
  },
  plan: e => {
    const marks: Record<string, string> = {
      completed: '[x]',
      in_progress: '[~]'
    };
    const lines = (e.entries ?? []).map(
      step => `${marks[String(step.status)] ?? '[ ]'} ${step.content}`
    );
    return row('jp-convo-agent', e, label('Plan'), pre(lines.join('\n')));
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
  condensation: (e, ctx) => {
    const before = Number(e.tokens_before ?? 0).toLocaleString('en-US');
    const after = Number(e.tokens_after ?? 0).toLocaleString('en-US');
    const why =
      e.reason === 'context_error'
        ? 'the model said the history was too long'
        : 'the history neared the context window';
    return row(
      'jp-convo-muted jp-convo-condensation',
      e,
      label('History condensed'),
      `events ${e.start_id}–${e.end_id} summarised (${why}; ~${before} → ~${after} tokens)`,
      foldable('summary', markdown(e.summary, ctx), 0, false)
    );
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
  const render = (RENDERERS as Record<string, unknown>)[event.kind] as
    ((e: IEvent, c: IRenderContext) => HTMLElement) | undefined;
  if (!render) {
    // A kind newer than this build (the server was upgraded first).
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
