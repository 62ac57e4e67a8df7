/**
 * The notebook widget's front end against its protocol (widget/protocol.ts): the model
 * here stands in for anywidget's (the kernel side is tested in
 * tests/kernel/test_kernel_widgets.py, the two together in tests/ui).
 */
import { IEvent } from '../types';
import {
  FromKernel,
  IWidgetModel,
  IWidgetState,
  ToKernel
} from '../widget/protocol';
import { EventStore } from '../widget/store';
import { NotebookView } from '../widget/view';
import { standaloneRenderContext } from '../render/standalone';
import { ev } from './fixtures';

class Model implements IWidgetModel {
  constructor(public state: IWidgetState) {}
  values: Record<string, any> = {
    max_rows: 3,
    notice: { text: '', error: false }
  };
  sent: ToKernel[] = [];
  handlers = new Map<string, Set<(...args: any[]) => void>>();

  get(name: string): any {
    return name === 'state' ? this.state : this.values[name];
  }
  on(event: string, callback: (...args: any[]) => void): void {
    if (!this.handlers.has(event)) {
      this.handlers.set(event, new Set());
    }
    this.handlers.get(event)!.add(callback);
  }
  off(event?: string | null, callback?: ((...args: any[]) => void) | null) {
    if (event && callback) {
      this.handlers.get(event)?.delete(callback);
    }
  }
  send(content: ToKernel): void {
    this.sent.push(content);
  }
  emit(event: string, ...args: any[]): void {
    for (const handler of this.handlers.get(event) ?? []) {
      handler(...args);
    }
  }
  message(message: FromKernel): void {
    this.emit('msg:custom', message);
  }
  setState(state: Partial<IWidgetState>): void {
    this.state = { ...this.state, ...state };
    this.emit('change:state');
  }
}

const STATE: IWidgetState = {
  conversation_id: '0123456789abcdef',
  title: 'Plotting',
  status: 'RUNNING',
  agent_state: 'running',
  error: null,
  metrics: {
    prompt_tokens: 1000,
    completion_tokens: 234,
    cost: 0.0012,
    llm_calls: 2
  },
  awaiting: null,
  start_task: null,
  start_error: null,
  sandbox: null
};

const message = (id: number): IEvent =>
  ev(id, 'message', { source: 'agent', text: `m${id}`, image_urls: [] });

function setup(): { model: Model; store: EventStore; view: NotebookView } {
  const model = new Model(STATE);
  const store = new EventStore(model);
  const view = new NotebookView(model, store, standaloneRenderContext());
  document.body.appendChild(view.node);
  return { model, store, view };
}

const button = (view: NotebookView, text: string) =>
  Array.from(view.node.querySelectorAll('button')).find(
    b => b.textContent === text
  ) as HTMLButtonElement;

describe('the notebook widget', () => {
  it('asks for its window and shows the header', () => {
    const { model, store, view } = setup();
    expect(model.sent).toEqual([{ type: 'sync', view: store.token }]);
    const text = view.node.textContent ?? '';
    expect(text).toContain('Plotting');
    expect(text).toContain('01234567');
    expect(text).toContain('1,234 tokens (1,000 in, 234 out) · $0.0012');
    expect(text).toContain('2 LLM calls');
    expect(view.node.querySelector('.jp-convo-badge')?.textContent).toBe(
      'running'
    );
  });

  it('shows how the tools are isolated once the runtime said so', () => {
    const { model, view } = setup();
    const badge = view.node.querySelector(
      '.jp-convo-sandbox-badge'
    ) as HTMLElement;
    expect(badge.hidden).toBe(true);
    model.setState({
      sandbox: {
        mechanism: 'none',
        confined: false,
        network: true,
        message: 'NOT CONFINED: bubblewrap is not installed'
      }
    });
    expect(badge.hidden).toBe(false);
    expect(badge.textContent).toBe('unconfined');
    expect(badge.title).toBe('NOT CONFINED: bubblewrap is not installed');
    expect(badge.className).toContain('jp-convo-sandbox-unconfined');
    model.setState({
      sandbox: {
        mechanism: 'bubblewrap',
        confined: true,
        network: false,
        message: ''
      }
    });
    expect(badge.textContent).toBe('confined, no network');
  });

  it('shows streamed events at once and merges its window when it comes', () => {
    const { model, store, view } = setup();
    // The kernel is busy in a cell: the window waits, new events stream in.
    model.message({ type: 'append', events: [message(9)], total: 10 });
    expect(view.events.ids).toEqual([9]);
    model.message({
      type: 'window',
      view: 'another-store',
      events: [message(0)],
      total: 1
    });
    expect(view.events.ids).toEqual([9]);
    model.message({
      type: 'window',
      view: store.token,
      events: [7, 8].map(message),
      total: 9
    });
    expect(view.events.ids).toEqual([7, 8, 9]);
    const earlier = view.node.querySelector('.jp-convo-earlier')!;
    expect(earlier.textContent).toBe('Show earlier events (7 folded)');

    model.message({
      type: 'append',
      events: [message(9), message(10)],
      total: 11
    });
    expect(view.events.ids).toEqual([8, 9, 10]);
    expect(earlier.textContent).toBe('Show earlier events (8 folded)');

    (earlier as HTMLButtonElement).click();
    expect(model.sent[model.sent.length - 1]).toEqual({
      type: 'earlier',
      view: view.token,
      before_id: 8,
      count: 3
    });
    model.message({
      type: 'earlier',
      view: 'another-view',
      events: [1, 2].map(message),
      total: 11
    });
    model.message({
      type: 'earlier',
      view: view.token,
      events: [5, 6, 7].map(message),
      total: 11
    });
    expect(view.events.ids).toEqual([5, 6, 7, 8, 9, 10]);
    expect(view.received).toEqual([5, 6, 7, 8, 9, 10]);

    model.message({
      type: 'append',
      events: [20, 21].map(message),
      total: 30,
      gap: true
    });
    expect(view.events.ids).toEqual([20, 21]);
    expect(earlier.textContent).toBe('Show earlier events (28 folded)');
  });

  it('gives a second view of the model what the first one got', () => {
    const { model, store } = setup();
    model.message({
      type: 'append',
      events: [1, 2, 3, 4].map(message),
      total: 5
    });
    expect(store.events.map(event => event.id)).toEqual([2, 3, 4]); // max_rows
    const second = new NotebookView(model, store, standaloneRenderContext());
    expect(second.events.ids).toEqual([2, 3, 4]);
    expect(model.sent.filter(m => m.type === 'sync')).toHaveLength(1);
  });

  it('sends a message, clears the box once the kernel took it', () => {
    const { model, view } = setup();
    const input = view.node.querySelector('textarea')!;
    button(view, 'Send').click();
    expect(model.sent).toHaveLength(1); // empty box: nothing sent
    input.value = ' more please ';
    input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter' }));
    expect(model.sent[1]).toEqual({
      type: 'send',
      view: view.token,
      text: 'more please'
    });
    expect(button(view, 'Send').disabled).toBe(true);
    model.message({ type: 'done', view: view.token, action: 'send', ok: true });
    expect(input.value).toBe('');
    expect(button(view, 'Send').disabled).toBe(false);
  });

  it('shows the waiting action with Confirm and Reject, and Stop while running', () => {
    const { model, view } = setup();
    const bar = view.node.querySelector<HTMLElement>('.jp-convo-confirm')!;
    expect(bar.hidden).toBe(true);
    model.setState({
      agent_state: 'awaiting_user_confirmation',
      awaiting: { id: 4, kind: 'command', security_risk: 'high' }
    });
    expect(bar.hidden).toBe(false);
    expect(bar.textContent).toContain(
      'Action 4 (command, risk high) waits for your confirmation'
    );
    button(view, 'Confirm').click();
    button(view, 'Reject').click();
    button(view, 'Stop').click();
    expect(model.sent.slice(1).map(m => m.type)).toEqual([
      'confirm',
      'reject',
      'stop'
    ]);
    model.setState({
      status: 'STOPPED',
      agent_state: 'stopped',
      awaiting: null
    });
    expect(bar.hidden).toBe(true);
    expect(button(view, 'Stop').disabled).toBe(true);
  });

  it('shows start progress, a failed start and notices', () => {
    const { model, view } = setup();
    const start = view.node.querySelector<HTMLElement>('.jp-convo-start')!;
    model.setState({
      start_task: { status: 'PREPARING_WORKSPACE', detail: null }
    });
    expect(start.hidden).toBe(false);
    expect(start.textContent).toBe('Starting (3/4): preparing workspace…');
    model.setState({ start_error: 'no sandbox', status: 'ERROR' });
    expect(start.textContent).toBe('Could not start: no sandbox');
    model.values.notice = { text: 'ValueError: nope', error: true };
    model.emit('change:notice');
    const notice = view.node.querySelector('.jp-convo-notice')!;
    expect(notice.textContent).toBe('ValueError: nope');
    expect(notice.classList.contains('jp-convo-notice-error')).toBe(true);
  });

  it('stops listening when disposed', () => {
    const { model, view } = setup();
    view.dispose();
    model.setState({ title: 'Changed' });
    model.message({ type: 'append', events: [message(1)], total: 2 });
    expect(view.node.textContent).not.toContain('Changed');
    expect(view.events.rowCount).toBe(0);
  });
});
