/**
 * The renderer in its two hosts: every event kind renders; display bundles go through the
 * host's rendermime when it has one (the panel) and the built-in sanitized path when not
 * (the notebook widget, with DOMPurify); EventList shows each event once and marks answers.
 */
import { EventList } from '../render/list';
import { builtinMimeBlock, mimeBlock } from '../render/mime';
import { hasRow, renderEvent } from '../render/events';
import { standaloneRenderContext } from '../render/standalone';
import { EventKind, EventOf, IEvent, MimeBundle } from '../types';
import { ev } from './fixtures';

const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

/** An event of one kind (fields not given take the fixture's defaults). */
function one<K extends EventKind>(
  kind: K,
  fields: Record<string, unknown>
): EventOf<K> {
  return ev(1, kind, fields) as EventOf<K>;
}

/** One event of each kind: the type makes this list grow with the schema. */
const ONE_OF_EACH: { [K in EventKind]: EventOf<K> } = {
  message: one('message', { source: 'user', text: 'hi', image_urls: [] }),
  think: one('think', { thought: 'hmm' }),
  tool_call: one('tool_call', {
    tool_kind: 'edit',
    title: 'Edit a.txt',
    locations: [{ path: 'a.txt', line: 1 }],
    arguments: '{}',
    options: [],
    confirmation: 'none'
  }),
  tool_result: one('tool_result', {
    status: 'completed',
    title: 'Edit a.txt',
    output: 'done',
    diff: ''
  }),
  plan: one('plan', {
    entries: [{ content: 'look', priority: 'high', status: 'pending' }]
  }),
  finish: one('finish', { message: 'done' }),
  command: one('command', { command: 'ls', confirmation: 'none' }),
  command_output: one('command_output', { output: 'a\nb', exit_code: 0 }),
  python: one('python', { code: '1 + 1', confirmation: 'none' }),
  python_output: one('python_output', {
    stdout: '',
    stderr: '',
    display_data: [],
    result: { 'text/plain': '2' }
  }),
  file_read: one('file_read', { path: 'a.txt', confirmation: 'none' }),
  file_content: one('file_content', { path: 'a.txt', content: 'x' }),
  file_edit: one('file_edit', {
    command: 'create',
    path: 'a.txt',
    confirmation: 'none'
  }),
  file_edit_result: one('file_edit_result', { path: 'a.txt', diff: '+x' }),
  confirmation: one('confirmation', { cause: 0, confirmed: true }),
  agent_state: one('agent_state', { state: 'finished', reason: '' }),
  status: one('status', { status: 'READY', message: '' }),
  sandbox: one('sandbox', {
    mechanism: 'bubblewrap',
    confined: true,
    network: true,
    network_off_by: null,
    home: '/d/c/home',
    mounts: [{ path: '/usr', mode: 'ro', source: null }],
    message: ''
  }),
  error: one('error', { code: 'AGENT_ERROR$X', message: 'bad' }),
  title: one('title', { title: 'T' }),
  llm_call: one('llm_call', { model: 'm', prompt_tokens: 3 }),

  replay_step: one('replay_step', {
    step: 1,
    recorded_event_id: 4,
    verdict: 'diverged',
    diff: '-a\n+b'
  }),
  replay_summary: one('replay_summary', {
    mode: 'actions',
    steps: 2,
    reproduced: 1,
    diverged: 1,
    skipped: 0,
    diverged_steps: [2],
    message: ''
  }),
  condensation: one('condensation', {
    start_id: 3,
    end_id: 9,
    summary: 'Earlier steps.',
    turns: 2,
    reason: 'context_window',
    tokens_before: 9000,
    tokens_after: 2000
  })
};

const widgetCtx = standaloneRenderContext();

describe('every kind', () => {
  it.each(Object.entries(ONE_OF_EACH))('%s renders', (kind, event) => {
    const row = renderEvent(event as IEvent, widgetCtx);
    if (kind === 'title' || kind === 'llm_call') {
      expect(row).toBeNull();
      expect(hasRow(event as IEvent)).toBe(false);
    } else {
      expect(row?.dataset.kind).toBe(kind);
      // A kind without a renderer would show as a bare muted row with its name.
      expect(row?.textContent).not.toBe(kind);
    }
  });
});

describe('display bundles', () => {
  const table = '<table><tr><td onclick="x()">1</td></tr></table>';

  it('go through the host rendermime when it has one', () => {
    const seen: MimeBundle[] = [];
    const ctx = {
      sanitize: (html: string) => html,
      renderMime: (bundle: MimeBundle) => {
        seen.push(bundle);
        const node = document.createElement('div');
        node.className = 'from-rendermime';
        return node;
      }
    };
    const row = renderEvent(
      ev(2, 'python_output', {
        display_data: [{ 'text/html': table, 'text/plain': 'df' }],
        result: null
      }),
      ctx
    );
    expect(seen).toEqual([{ 'text/html': table, 'text/plain': 'df' }]);
    expect(row?.querySelector('.from-rendermime')).not.toBeNull();
  });

  it('fall back to the built-in path when rendermime has no renderer', () => {
    const ctx = { ...widgetCtx, renderMime: () => null };
    const node = mimeBlock({ 'image/png': PNG }, ctx);
    expect((node as HTMLImageElement).src).toBe(`data:image/png;base64,${PNG}`);
  });

  it('are sanitized by DOMPurify in the widget', () => {
    const html = builtinMimeBlock(
      {
        'text/html': `<style>body{display:none}</style><script>x()</script>${table}<img src=x onerror="y()">`
      },
      widgetCtx
    );
    expect(html?.querySelector('td')?.textContent).toBe('1');
    expect(html?.querySelector('script')).toBeNull();
    expect(html?.querySelector('style')).toBeNull();
    expect(html?.innerHTML).not.toContain('onclick');
    expect(html?.innerHTML).not.toContain('onerror');
  });

  it('keep Markdown and text in the widget', () => {
    const md = builtinMimeBlock({ 'text/markdown': '# Title' }, widgetCtx);
    expect(md?.querySelector('h1')?.textContent).toBe('Title');
    const text = builtinMimeBlock({ 'text/plain': '<b>' }, widgetCtx);
    expect(text?.tagName).toBe('PRE');
    expect(text?.textContent).toBe('<b>');
  });
});

describe('EventList', () => {
  const message = (id: number) =>
    ev(id, 'message', { source: 'agent', text: `m${id}`, image_urls: [] });

  it('shows each event once, whichever way it arrives', () => {
    const list = new EventList(widgetCtx);
    list.append([message(1), message(2)]);
    list.append([message(2), message(3)]);
    list.prepend([message(0), message(1)]);
    expect(list.ids).toEqual([0, 1, 2, 3]);
    expect(list.firstId).toBe(0);
  });

  it('marks an action answered, whether the answer came before or after it', () => {
    const list = new EventList(widgetCtx);
    const action = ev(5, 'command', {
      source: 'agent',
      command: 'rm -rf x',
      confirmation: 'awaiting'
    });
    list.append([action]);
    expect(list.node.querySelector('.jp-convo-awaiting')).not.toBeNull();
    list.append([ev(7, 'confirmation', { cause: 5, confirmed: false })]);
    expect(list.node.querySelector('.jp-convo-awaiting')).toBeNull();
    expect(list.node.textContent).toContain('rejected');

    const late = new EventList(widgetCtx);
    late.append([ev(7, 'confirmation', { cause: 5, confirmed: true })]);
    late.prepend([action]);
    expect(late.node.querySelector('.jp-convo-awaiting')).toBeNull();
    expect(late.node.textContent).toContain('confirmed');
  });

  it('removes the oldest rows and can show them again', () => {
    const list = new EventList(widgetCtx);
    list.append([1, 2, 3, 4].map(message));
    expect(list.removeBefore(3)).toBe(2);
    expect(list.ids).toEqual([3, 4]);
    list.prepend([message(1), message(2)]);
    expect(list.ids).toEqual([1, 2, 3, 4]);
  });
});
