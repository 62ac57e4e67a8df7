/**
 * A conversation view (a main-area tab): header with state and metrics, actions, start
 * progress, the live event stream (the same renderer as the notebook widget), the
 * confirmation bar and the message box. Buttons run the extension's commands with this conversation's id.
 */
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { ConversationModel, IStateChange } from '../models/conversation';
import { formatMetrics } from '../models/format';
import { displayState, isActive } from '../models/state';
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
import { IEvent } from '../types';
import { convoIcon } from './icons';

/** Commands the view's buttons run (registered by the plugin). */
export const ViewCommands = {
  stop: 'convo:stop',
  restart: 'convo:restart',
  rename: 'convo:rename',
  remove: 'convo:delete',
  exportZip: 'convo:export',
  openWorkspace: 'convo:open-workspace',
  openNotebook: 'convo:open-notebook',
  replay: 'convo:replay',
  confirm: 'convo:confirm',
  reject: 'convo:reject'
} as const;

export class ConversationView extends Widget {
  constructor(options: ConversationView.IOptions) {
    super();
    this.model = options.model;
    this._commands = options.commands;
    this._events = new EventList(options.renderContext);
    this._onSend = options.onSend;
    this.id = `jp-convo-view-${this.model.id}`;
    this.addClass('jp-convo-view');
    this.title.icon = convoIcon;
    this.title.closable = true;
    this.title.label = 'Conversation';
    this.node.tabIndex = -1;

    this._titleText = h('span', 'jp-convo-view-title-text', 'Conversation');
    this._badge = h('span', 'jp-convo-badge');
    // Not a jp-convo-badge: that one is the conversation's state.
    this._sandboxBadge = h('span', 'jp-convo-sandbox-badge');
    this._sandboxBadge.hidden = true;
    this._meta = h('div', 'jp-convo-view-meta');
    this._connection = h('span', 'jp-convo-connection');
    this._actions = h('div', 'jp-convo-actions');
    this._actions.setAttribute('role', 'toolbar');
    this._actions.setAttribute('aria-label', 'Conversation actions');
    for (const [label, command, css] of [
      ['Stop', ViewCommands.stop, 'jp-convo-stop'],
      ['Restart', ViewCommands.restart, 'jp-convo-restart'],
      ['Rename', ViewCommands.rename, 'jp-convo-rename'],
      ['Delete', ViewCommands.remove, 'jp-convo-delete'],
      ['Export', ViewCommands.exportZip, 'jp-convo-export'],
      ['Open workspace', ViewCommands.openWorkspace, 'jp-convo-open-workspace'],
      ['Open as notebook', ViewCommands.openNotebook, 'jp-convo-open-notebook'],
      ['Replay', ViewCommands.replay, 'jp-convo-replay']
    ] as const) {
      this._actions.appendChild(this._commandButton(label, command, css));
    }
    const header = h(
      'div',
      'jp-convo-view-header',
      h(
        'div',
        'jp-convo-view-title',
        this._titleText,
        this._badge,
        this._sandboxBadge,
        this._connection
      ),
      this._meta,
      this._actions
    );

    this._start = h('div', 'jp-convo-start');
    this._start.setAttribute('role', 'status');
    this._earlier = button('Show earlier events', 'jp-convo-earlier');
    this._earlier.addEventListener('click', () => void this._loadEarlier());
    this._scroll = h(
      'div',
      'jp-convo-scroll',
      this._earlier,
      this._events.node
    );
    this._follower = new ScrollFollower(this._scroll, this._events.node);
    this._scroll.appendChild(this._follower.jump);

    this._confirmBar = new ConfirmBar(
      this._commandButton('Confirm', ViewCommands.confirm, ''),
      this._commandButton('Reject', ViewCommands.reject, '')
    );
    this._notice = noticeLine();
    this._input = messageBox();
    this._send = button('Send', 'jp-convo-send jp-mod-accept');
    this._send.addEventListener('click', () => void this._sendMessage());
    const inputBar = h('div', 'jp-convo-input', this._input, this._send);

    this.node.append(
      header,
      this._start,
      this._scroll,
      this._confirmBar.node,
      this._notice,
      inputBar
    );

    this.model.stateChanged.connect(this._onStateChanged, this);
    this.model.eventsAdded.connect(this._onEventsAdded, this);
    this.model.earlierAdded.connect(this._onEarlierAdded, this);
    this.model.noticeReceived.connect(this._onNotice, this);
    this.model.statusChanged.connect(this._renderStatus, this);
    this._onEventsAdded(this.model, this.model.window.events);
    this._renderState();
    this._renderStatus();
  }

  readonly model: ConversationModel;

  /** Put the cursor in the message box. */
  focusInput(): void {
    this._input.focus();
  }

  /** Show a line under the events (errors of actions run from here). */
  showNotice(text: string, isError = false): void {
    setNotice(this._notice, text, isError);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._input.addEventListener('keydown', this);
  }

  protected onBeforeDetach(msg: Message): void {
    this._input.removeEventListener('keydown', this);
    super.onBeforeDetach(msg);
  }

  protected onActivateRequest(msg: Message): void {
    if (!this._input.disabled) {
      this._input.focus();
    } else {
      this.node.focus();
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._follower.refresh();
  }

  handleEvent(event: Event): void {
    if (event.type === 'keydown') {
      const key = event as KeyboardEvent;
      if (isSendKey(key)) {
        key.preventDefault();
        void this._sendMessage();
      }
    }
  }

  /** A closed tab is gone for good (its model is released, its socket closed). */
  protected onCloseRequest(msg: Message): void {
    super.onCloseRequest(msg);
    this.dispose();
  }

  dispose(): void {
    if (!this.isDisposed) {
      this._follower.dispose();
    }
    super.dispose();
  }

  // --- rendering ------------------------------------------------------------------------

  private _onEventsAdded(_: ConversationModel, events: IEvent[]): void {
    const before = this._events.rowCount;
    this._events.append(events);
    this._follower.added(this._events.rowCount - before);
    this._earlier.hidden = !this.model.window.hasEarlier;
  }

  private _onEarlierAdded(_: ConversationModel, events: IEvent[]): void {
    const before = this._scroll.scrollHeight;
    this._events.prepend(events);
    this._scroll.scrollTop += this._scroll.scrollHeight - before;
    this._earlier.hidden = !this.model.window.hasEarlier;
  }

  private _onStateChanged(_: ConversationModel, change: IStateChange): void {
    this._renderState();
  }

  private _renderState(): void {
    const state = this.model.state;
    const loaded = state.status !== null || state.agentState !== null;
    const title =
      state.title || (loaded ? 'Untitled conversation' : 'Loading…');
    this.title.label = title;
    this.title.caption = `${title}\n${this.model.id}`;
    this._titleText.textContent = title;
    const shown = state.deleted
      ? 'deleted'
      : loaded
        ? displayState(state.status, state.agentState)
        : 'loading';
    this._badge.className = `jp-convo-badge jp-convo-badge-${shown}`;
    this._badge.textContent = shown.replace(/_/g, ' ');
    showSandbox(this._sandboxBadge, state.sandbox);
    const parts = [
      formatMetrics(state.promptTokens, state.completionTokens, state.cost),
      state.model ?? ''
    ].filter(Boolean);
    this._meta.replaceChildren(
      h('code', 'jp-convo-id', this.model.id),
      ` · ${parts.join(' · ')}`
    );
    if (
      state.error &&
      (state.status === 'ERROR' || state.agentState === 'error')
    ) {
      this._meta.appendChild(h('div', 'jp-convo-view-error', state.error));
    }
    const awaiting = state.awaiting;
    this._confirmBar.show(
      awaiting && !state.deleted
        ? {
            id: awaiting.id,
            kind: awaiting.kind,
            security_risk: awaiting.security_risk
          }
        : null
    );
    this._setEnabled(ViewCommands.stop, isActive(state) && !state.deleted);
    this._setEnabled(
      ViewCommands.restart,
      !isActive(state) && !state.deleted && state.status !== null
    );
    for (const command of [
      ViewCommands.rename,
      ViewCommands.remove,
      ViewCommands.exportZip,
      ViewCommands.openWorkspace,
      ViewCommands.openNotebook
    ]) {
      this._setEnabled(command, !state.deleted);
    }
    this._input.disabled = state.deleted;
    this._send.disabled = state.deleted || this._sending;
    if (state.deleted) {
      this.showNotice('This conversation was deleted.', true);
    }
  }

  private _renderStatus(): void {
    const model = this.model;
    const connection = model.connection;
    this._connection.textContent =
      connection === 'reconnecting'
        ? 'reconnecting…'
        : connection === 'connecting'
          ? 'connecting…'
          : '';
    this._connection.title =
      connection === 'open' ? 'Receiving live events' : (model.problem ?? '');
    showStart(this._start, startText(model.startTask));
    if (model.problem && !model.state.deleted) {
      this.showNotice(model.problem, true);
    }
  }

  private _onNotice(_: ConversationModel, event: IEvent): void {
    if (event.kind === 'error') {
      this.showNotice(`${event.code}: ${event.message ?? ''}`, true);
    }
  }

  // --- actions --------------------------------------------------------------------------

  private async _sendMessage(): Promise<void> {
    const text = this._input.value.trim();
    if (!text || this._sending) {
      return;
    }
    this._sending = true;
    this._send.disabled = true;
    try {
      await this.model.sendMessage(text);
      this._input.value = '';
      this.showNotice('');
      this._follower.toEnd();
      this._onSend?.(this.model.id);
    } catch (error) {
      this.showNotice(
        `Could not send: ${(error as Error).message ?? error}`,
        true
      );
    } finally {
      this._sending = false;
      this._send.disabled = this.model.state.deleted;
      this._input.focus();
    }
  }

  private async _loadEarlier(): Promise<void> {
    this._earlier.disabled = true;
    try {
      await this.model.loadEarlier();
    } catch (error) {
      this.showNotice(`Could not load earlier events: ${error}`, true);
    } finally {
      this._earlier.disabled = false;
    }
  }

  private _commandButton(
    label: string,
    command: string,
    className: string
  ): HTMLButtonElement {
    const node = button(label, className);
    node.dataset.command = command;
    node.addEventListener('click', () => {
      void this._commands.execute(command, { id: this.model.id });
    });
    return node;
  }

  private _setEnabled(command: string, enabled: boolean): void {
    const button = this.node.querySelector<HTMLButtonElement>(
      `button[data-command="${command}"]`
    );
    if (button) {
      button.disabled = !enabled;
    }
  }

  private _commands: CommandRegistry;
  private _events: EventList;
  private _onSend?: (id: string) => void;
  private _titleText: HTMLElement;
  private _badge: HTMLElement;
  private _sandboxBadge: HTMLElement;
  private _meta: HTMLElement;
  private _connection: HTMLElement;
  private _actions: HTMLElement;
  private _start: HTMLElement;
  private _earlier: HTMLButtonElement;
  private _scroll: HTMLElement;
  private _confirmBar: ConfirmBar;
  private _notice: HTMLElement;
  private _input: HTMLTextAreaElement;
  private _send: HTMLButtonElement;
  private _follower: ScrollFollower;
  private _sending = false;
}

export namespace ConversationView {
  export interface IOptions {
    model: ConversationModel;
    commands: CommandRegistry;
    /** How events render here: JupyterLab's sanitizer and rendermime (render/lab.ts). */
    renderContext: IRenderContext;
    /** Called after a message was accepted (to watch the conversation again). */
    onSend?: (id: string) => void;
  }
}
