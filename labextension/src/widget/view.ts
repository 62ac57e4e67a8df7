/**
 * The notebook widget's view: header, start progress, event rows (the panel's renderer),
 * "show earlier", confirmation bar, message box, Send and Stop. It only talks to its model
 * (widget/protocol.ts), so it runs in any anywidget host, with no JupyterLab services.
 */
import { formatMetrics } from '../models/format';
import { displayState } from '../models/state';
import { IRenderContext } from '../render/context';
import {
  ConfirmBar,
  button,
  isSendKey,
  messageBox,
  noticeLine,
  setNotice,
  showSandbox,
  showStart,
  startText
} from '../render/controls';
import { h } from '../render/dom';
import { ScrollFollower } from '../render/follow';
import { EventList } from '../render/list';
import { FromKernel, IWidgetModel, IWidgetState, ToKernel } from './protocol';
import { EventStore, IStoreChange } from './store';

const ENDED = new Set(['STOPPED', 'ERROR', 'ARCHIVED']);

let views = 0;

export class NotebookView {
  constructor(
    private readonly _model: IWidgetModel,
    private readonly _store: EventStore,
    ctx: IRenderContext
  ) {
    this.token = `v${++views}-${Date.now().toString(36)}`;
    this._events = new EventList(ctx);
    this._limit = Math.max(1, this._model.get('max_rows') || 200);

    this._title = h('span', 'jp-convo-view-title-text');
    this._badge = h('span', 'jp-convo-badge');
    this._sandboxBadge = h('span', 'jp-convo-sandbox-badge');
    this._sandboxBadge.hidden = true;
    this._meta = h('div', 'jp-convo-view-meta');
    this._start = h('div', 'jp-convo-start');
    this._start.setAttribute('role', 'status');
    this._earlier = button('Show earlier events', 'jp-convo-earlier');
    this._earlier.hidden = true;
    this._earlier.addEventListener('click', () => this._askEarlier());
    this._scroll = h(
      'div',
      'jp-convo-scroll',
      this._earlier,
      this._events.node
    );
    this._follower = new ScrollFollower(this._scroll, this._events.node);
    this._scroll.appendChild(this._follower.jump);
    const confirm = button('Confirm', '');
    confirm.addEventListener('click', () => this._act('confirm'));
    const reject = button('Reject', '');
    reject.addEventListener('click', () => this._act('reject'));
    this._confirmBar = new ConfirmBar(confirm, reject);
    this._notice = noticeLine();
    this._input = messageBox();
    this._input.addEventListener('keydown', event => {
      if (isSendKey(event)) {
        event.preventDefault();
        this._sendMessage();
      }
    });
    this._send = button('Send', 'jp-convo-send jp-mod-accept');
    this._send.addEventListener('click', () => this._sendMessage());
    this._stop = button('Stop', 'jp-convo-stop jp-mod-warn');
    this._stop.addEventListener('click', () => this._act('stop'));

    this.node = h(
      'div',
      'jp-convo-view jp-convo-widget',
      h(
        'div',
        'jp-convo-view-header',
        h(
          'div',
          'jp-convo-view-title',
          this._title,
          this._badge,
          this._sandboxBadge
        ),
        this._meta
      ),
      this._start,
      this._scroll,
      this._confirmBar.node,
      this._notice,
      h('div', 'jp-convo-input', this._input, this._send, this._stop)
    );

    this._model.on('change:state', this._renderState);
    this._model.on('change:notice', this._renderNotice);
    this._model.on('msg:custom', this._onMessage);
    this._disconnect = this._store.connect(this._onStoreChange);
    this._renderState();
    this._renderNotice();
    this._onStoreChange({ reset: true, events: this._store.events });
  }

  /** This view's name in the messages it sends. */
  readonly token: string;
  readonly node: HTMLElement;

  /** The rows on screen. */
  get events(): EventList {
    return this._events;
  }

  /** Ids of the events this view holds (rows or not), oldest first. */
  get received(): number[] {
    return [...this._received];
  }

  /** Stop listening to the model (the output was cleared or re-rendered). */
  dispose(): void {
    this._model.off('change:state', this._renderState);
    this._model.off('change:notice', this._renderNotice);
    this._model.off('msg:custom', this._onMessage);
    this._disconnect();
    this._follower.dispose();
  }

  private _onMessage = (message: FromKernel): void => {
    if (message.type === 'done') {
      if (message.view === this.token) {
        this._busy = false;
        this._send.disabled = false;
        if (message.action === 'send' && message.ok) {
          this._input.value = '';
        }
      }
      return;
    }
    if (message.type === 'earlier' && message.view === this.token) {
      const before = this._scroll.scrollHeight;
      const first = this._received[0] ?? Infinity;
      const older = message.events.filter(event => event.id < first);
      this._received = [...older.map(event => event.id), ...this._received];
      this._events.prepend(older);
      this._limit = Math.max(this._limit, this._received.length);
      this._scroll.scrollTop += this._scroll.scrollHeight - before;
      this._showFolded();
    }
  };

  /** New events from the store: appended (folding the oldest past the limit), or all
   * rows drawn again from the store's list. */
  private _onStoreChange = (change: IStoreChange): void => {
    const before = change.reset ? 0 : this._events.rowCount;
    if (change.reset) {
      this._events.clear();
      this._received = [];
    }
    const last = this._received[this._received.length - 1] ?? -Infinity;
    const added = change.events.filter(event => event.id > last);
    this._received.push(...added.map(event => event.id));
    this._events.append(added);
    const shown = Math.max(0, this._events.rowCount - before);
    if (this._received.length > this._limit) {
      this._received = this._received.slice(-this._limit);
      this._events.removeBefore(this._received[0]);
    }
    this._showFolded();
    this._follower.added(shown);
  };

  private _showFolded(): void {
    const hidden = Math.max(0, this._store.total - this._received.length);
    this._earlier.hidden = hidden === 0;
    this._earlier.textContent = `Show earlier events (${hidden} folded)`;
  }

  private _renderState = (): void => {
    const state: IWidgetState = this._model.get('state');
    const title = state.title || 'Conversation';
    this._title.textContent = title;
    const shown = displayState(state.status, state.agent_state);
    this._badge.className = `jp-convo-badge jp-convo-badge-${shown}`;
    this._badge.textContent = shown.replace(/_/g, ' ');
    showSandbox(this._sandboxBadge, state.sandbox ?? null);
    const metrics = state.metrics;
    const calls = metrics.llm_calls;
    this._meta.replaceChildren(
      h('code', 'jp-convo-id', state.conversation_id.slice(0, 8)),
      ` · ${formatMetrics(metrics.prompt_tokens, metrics.completion_tokens, metrics.cost)}`,
      ` · ${calls} LLM call${calls === 1 ? '' : 's'}`
    );
    if (state.error && ENDED.has(state.status ?? '')) {
      this._meta.appendChild(h('div', 'jp-convo-view-error', state.error));
    }
    showStart(this._start, startText(state.start_task, state.start_error));
    this._confirmBar.show(state.awaiting);
    this._stop.disabled = ENDED.has(state.status ?? '');
  };

  private _renderNotice = (): void => {
    const notice = this._model.get('notice') ?? { text: '', error: false };
    setNotice(this._notice, notice.text, notice.error);
  };

  private _sendMessage(): void {
    const text = this._input.value.trim();
    if (!text || this._busy) {
      return;
    }
    this._busy = true;
    this._send.disabled = true;
    this._follower.toEnd();
    this._post({ type: 'send', view: this.token, text });
  }

  private _act(action: 'confirm' | 'reject' | 'stop'): void {
    this._post({ type: action, view: this.token });
  }

  private _askEarlier(): void {
    const first = this._received[0];
    if (first === undefined) {
      return;
    }
    this._post({
      type: 'earlier',
      view: this.token,
      before_id: first,
      count: Math.max(1, this._model.get('max_rows') || 200)
    });
  }

  private _post(message: ToKernel): void {
    this._model.send(message);
  }

  private _events: EventList;
  private _follower: ScrollFollower;
  private _limit: number;
  /** Ids of the events received, oldest first: a contiguous tail of the kernel's list. */
  private _received: number[] = [];
  private _disconnect: () => void;
  private _busy = false;
  private _title: HTMLElement;
  private _badge: HTMLElement;
  private _sandboxBadge: HTMLElement;
  private _meta: HTMLElement;
  private _start: HTMLElement;
  private _earlier: HTMLButtonElement;
  private _scroll: HTMLElement;
  private _confirmBar: ConfirmBar;
  private _notice: HTMLElement;
  private _input: HTMLTextAreaElement;
  private _send: HTMLButtonElement;
  private _stop: HTMLButtonElement;
}
