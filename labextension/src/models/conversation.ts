/**
 * One conversation, live: its metadata, the window of events a view shows, and the
 * WebSocket that streams new events (reconnecting from the last id seen, so nothing is
 * missed or shown twice). Views and watchers share one model per conversation.
 */
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { ConvoAPI } from '../api';
import { APIError, eventsSocketUrl } from '../handler';
import { EventOf, IEvent, IStartTask } from '../types';
import {
  IEventWindow,
  appendEvents,
  emptyWindow,
  fromNewestPage,
  oldestId,
  prependPage
} from './events';
import {
  IConversationState,
  emptyState,
  reduceEvent,
  reduceEvents,
  stateFromMetadata
} from './state';

export type ConnectionState =
  'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A state change: what was, what is. */
export interface IStateChange {
  prev: IConversationState;
  next: IConversationState;
}

/** Close code the server uses when the conversation was deleted. */
export const CLOSE_DELETED = 4404;
const TERMINAL_TASK = new Set(['READY', 'ERROR']);
const START_POLL_MS = 500;
const START_POLL_LIMIT_MS = 5 * 60_000;
const MAX_RECONNECT_MS = 10_000;
// Frames arriving together are rendered together.
const FLUSH_MS = 16;

export class ConversationModel implements IDisposable {
  constructor(
    readonly id: string,
    options: ConversationModel.IOptions = {}
  ) {
    this._pageSize = options.pageSize ?? 200;
    this._state = emptyState(id);
  }

  get state(): IConversationState {
    return this._state;
  }

  get window(): IEventWindow {
    return this._window;
  }

  get connection(): ConnectionState {
    return this._connection;
  }

  get startTask(): IStartTask | null {
    return this._startTask;
  }

  /** A load or reconnect problem to show (null when fine). */
  get problem(): string | null {
    return this._problem;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  get stateChanged(): ISignal<this, IStateChange> {
    return this._stateChanged;
  }

  /** Events appended at the end of the window, in order. */
  get eventsAdded(): ISignal<this, IEvent[]> {
    return this._eventsAdded;
  }

  /** Events prepended by `loadEarlier`, in order. */
  get earlierAdded(): ISignal<this, IEvent[]> {
    return this._earlierAdded;
  }

  /** Frames that are not logged events (id -1): refused inputs, server notices. */
  get noticeReceived(): ISignal<this, IEvent> {
    return this._noticeReceived;
  }

  /** Connection, start task or problem changed. */
  get statusChanged(): ISignal<this, void> {
    return this._statusChanged;
  }

  /** Load metadata and the newest events, then follow the stream. Idempotent. */
  load(): Promise<void> {
    if (!this._loading) {
      this._loading = this._load();
    }
    return this._loading;
  }

  private async _load(): Promise<void> {
    try {
      const meta = await ConvoAPI.getConversation(this.id);
      const [page, sandbox] = await Promise.all([
        ConvoAPI.searchEvents(this.id, {
          reverse: true,
          limit: this._pageSize
        }),
        // The sandbox event comes early: a long log's newest page may not hold it.
        ConvoAPI.searchEvents(this.id, {
          kind: 'sandbox',
          reverse: true,
          limit: 1
        })
      ]);
      this._window = fromNewestPage(page);
      const known = {
        ...stateFromMetadata(meta),
        sandbox: sandbox.items.find(isSandbox) ?? null
      };
      this._setState(reduceEvents(known, this._window.events));
      this._eventsAdded.emit(this._window.events);
      this._setProblem(null);
    } catch (error) {
      if (error instanceof APIError && error.status === 404 && !error.missing) {
        this._markDeleted();
        return;
      }
      this._setProblem(`Could not load the conversation: ${String(error)}`);
      this._loading = null;
      throw error;
    }
    this._connect();
  }

  /** The page of events before the oldest one held. */
  async loadEarlier(): Promise<IEvent[]> {
    const before = oldestId(this._window);
    if (before === null || !this._window.hasEarlier) {
      return [];
    }
    const page = await ConvoAPI.searchEvents(this.id, {
      reverse: true,
      limit: this._pageSize,
      before_id: before
    });
    const { window, added } = prependPage(this._window, page);
    this._window = window;
    if (added.length) {
      this._earlierAdded.emit(added);
    }
    return added;
  }

  /** Show the start task's progress until it is READY or failed. */
  followStartTask(task: IStartTask): void {
    this._startTask = task;
    this._statusChanged.emit();
    const began = Date.now();
    const poll = async () => {
      const current = this._startTask;
      if (
        this._isDisposed ||
        !current ||
        TERMINAL_TASK.has(current.status) ||
        Date.now() - began > START_POLL_LIMIT_MS
      ) {
        return;
      }
      try {
        const [fresh] = await ConvoAPI.getStartTasks([current.id]);
        if (fresh) {
          const changed =
            fresh.status !== current.status || fresh.detail !== current.detail;
          this._startTask = fresh;
          if (changed) {
            this._statusChanged.emit();
          }
        }
      } catch (error) {
        console.warn('jupyter-convo: start task poll failed', error);
      }
      window.setTimeout(poll, START_POLL_MS);
    };
    window.setTimeout(poll, START_POLL_MS);
  }

  // --- actions --------------------------------------------------------------------------

  sendMessage(text: string): Promise<unknown> {
    return ConvoAPI.sendMessage(this.id, text);
  }

  /** Answer the action waiting for confirmation. */
  answer(confirmed: boolean, reason = ''): Promise<unknown> {
    const awaiting = this._state.awaiting;
    if (!awaiting) {
      return Promise.reject(new Error('no action is waiting for confirmation'));
    }
    return ConvoAPI.sendInput(this.id, {
      kind: 'confirmation',
      action_id: awaiting.id,
      confirmed,
      reason
    });
  }

  async stop(): Promise<void> {
    const meta = await ConvoAPI.stopConversation(this.id);
    this._applyMetadata(meta.status, meta.agent_state);
  }

  async rename(title: string): Promise<void> {
    const meta = await ConvoAPI.renameConversation(this.id, title);
    this._setState({ ...this._state, title: meta.title });
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._closeSocket();
    if (this._flushTimer) {
      window.clearTimeout(this._flushTimer);
    }
    if (this._reconnectTimer) {
      window.clearTimeout(this._reconnectTimer);
    }
    Signal.clearData(this);
  }

  // --- the stream -----------------------------------------------------------------------

  private _connect(): void {
    if (this._isDisposed || this._state.deleted) {
      return;
    }
    this._closeSocket();
    this._setConnection(this._attempts ? 'reconnecting' : 'connecting');
    const socket = new WebSocket(
      eventsSocketUrl(this.id, this._state.lastSeenId)
    );
    this._socket = socket;
    socket.onopen = () => {
      this._attempts = 0;
      this._setConnection('open');
      this._setProblem(null);
    };
    socket.onmessage = (message: MessageEvent) => {
      this._receive(String(message.data));
    };
    socket.onclose = (close: CloseEvent) => {
      if (this._socket !== socket) {
        return; // replaced on purpose
      }
      this._socket = null;
      this._flush();
      if (close.code === CLOSE_DELETED) {
        this._markDeleted();
        return;
      }
      this._reconnectSoon();
    };
  }

  private _reconnectSoon(): void {
    if (this._isDisposed || this._state.deleted) {
      return;
    }
    this._closeSocket();
    this._setConnection('reconnecting');
    const wait = Math.min(
      MAX_RECONNECT_MS,
      500 * 2 ** Math.min(this._attempts, 5)
    );
    this._attempts++;
    if (this._reconnectTimer) {
      window.clearTimeout(this._reconnectTimer);
    }
    this._reconnectTimer = window.setTimeout(async () => {
      this._reconnectTimer = 0;
      try {
        const meta = await ConvoAPI.getConversation(this.id);
        this._applyMetadata(meta.status, meta.agent_state);
      } catch (error) {
        if (
          error instanceof APIError &&
          error.status === 404 &&
          !error.missing
        ) {
          this._markDeleted();
          return;
        }
        this._setProblem(`Reconnecting: ${String(error)}`);
      }
      this._connect();
    }, wait);
  }

  private _closeSocket(): void {
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      socket.close();
    }
  }

  private _receive(data: string): void {
    let event: IEvent;
    try {
      event = JSON.parse(data) as IEvent;
    } catch {
      console.warn('jupyter-convo: a frame that is not JSON', data);
      return;
    }
    if (typeof event.id !== 'number' || event.id < 0) {
      this._setState(reduceEvent(this._state, event));
      this._noticeReceived.emit(event);
      return;
    }
    this._pending.push(event);
    if (!this._flushTimer) {
      this._flushTimer = window.setTimeout(() => this._flush(), FLUSH_MS);
    }
  }

  private _flush(): void {
    if (this._flushTimer) {
      window.clearTimeout(this._flushTimer);
      this._flushTimer = 0;
    }
    if (!this._pending.length || this._isDisposed) {
      return;
    }
    const batch = this._pending;
    this._pending = [];
    const { window: next, added } = appendEvents(this._window, batch);
    if (!added.length) {
      return;
    }
    this._window = next;
    this._setState(reduceEvents(this._state, added));
    this._eventsAdded.emit(added);
  }

  // --- state ----------------------------------------------------------------------------

  private _applyMetadata(status: string, agentState: string | null): void {
    this._setState({
      ...this._state,
      status,
      agentState: agentState ?? this._state.agentState
    });
  }

  private _markDeleted(): void {
    this._closeSocket();
    this._setConnection('closed');
    if (!this._state.deleted) {
      this._setState({ ...this._state, deleted: true });
    }
  }

  private _setState(next: IConversationState): void {
    const prev = this._state;
    if (next === prev) {
      return;
    }
    this._state = next;
    this._stateChanged.emit({ prev, next });
  }

  private _setConnection(connection: ConnectionState): void {
    if (this._connection !== connection) {
      this._connection = connection;
      this._statusChanged.emit();
    }
  }

  private _setProblem(problem: string | null): void {
    if (this._problem !== problem) {
      this._problem = problem;
      this._statusChanged.emit();
    }
  }

  private _pageSize: number;
  private _state: IConversationState;
  private _window: IEventWindow = emptyWindow();
  private _connection: ConnectionState = 'idle';
  private _startTask: IStartTask | null = null;
  private _problem: string | null = null;
  private _socket: WebSocket | null = null;
  private _attempts = 0;
  private _pending: IEvent[] = [];
  private _flushTimer = 0;
  private _reconnectTimer = 0;
  private _loading: Promise<void> | null = null;
  private _isDisposed = false;
  private _stateChanged = new Signal<this, IStateChange>(this);
  private _eventsAdded = new Signal<this, IEvent[]>(this);
  private _earlierAdded = new Signal<this, IEvent[]>(this);
  private _noticeReceived = new Signal<this, IEvent>(this);
  private _statusChanged = new Signal<this, void>(this);
}

export namespace ConversationModel {
  export interface IOptions {
    /** Events per page of history. */
    pageSize?: number;
  }
}

function isSandbox(event: IEvent): event is EventOf<'sandbox'> {
  return event.kind === 'sandbox';
}
