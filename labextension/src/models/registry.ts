/**
 * The live conversation models of this JupyterLab page: one per conversation, shared by
 * its view and by the watcher that follows a conversation the user started (to tell them
 * when it finishes, fails or waits for a confirmation).
 */
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { IEvent } from '../types';
import { ConversationModel, IStateChange } from './conversation';
import { INotice, noticeFor } from './notify';
import { IConversationState, emptyState, reduceEvent } from './state';

/** A notice about one conversation. */
export interface IConversationNotice {
  id: string;
  notice: INotice;
}

/** Notices after which a watcher stops following (the run is over or waits for input). */
const SETTLING_NOTICES = new Set(['finished', 'replied', 'failed']);

interface IWatch {
  model: ConversationModel;
  /** The state notices are decided from, advanced one event at a time. */
  state: IConversationState;
  sent: Set<string>;
  ready: boolean;
}

export class ConversationRegistry implements IDisposable {
  constructor(options: ConversationModel.IOptions = {}) {
    this._options = options;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Any model's state changed (for live list rows). */
  get stateChanged(): ISignal<this, IStateChange> {
    return this._stateChanged;
  }

  /** A watched conversation finished, failed or waits for a confirmation. */
  get noticeRaised(): ISignal<this, IConversationNotice> {
    return this._noticeRaised;
  }

  /** The set of watched conversations changed (to persist it). */
  get watchedChanged(): ISignal<this, string[]> {
    return this._watchedChanged;
  }

  get watched(): string[] {
    return [...this._watches.keys()];
  }

  find(id: string): ConversationModel | undefined {
    return this._models.get(id)?.model;
  }

  /** The shared model of `id`, held until `release`. */
  acquire(id: string): ConversationModel {
    let entry = this._models.get(id);
    if (!entry) {
      const model = new ConversationModel(id, this._options);
      model.stateChanged.connect(this._onStateChanged, this);
      entry = { model, holders: 0 };
      this._models.set(id, entry);
    }
    entry.holders++;
    return entry.model;
  }

  release(id: string): void {
    const entry = this._models.get(id);
    if (!entry) {
      return;
    }
    entry.holders--;
    if (entry.holders <= 0) {
      this._models.delete(id);
      entry.model.dispose();
    }
  }

  /**
   * Follow a conversation the user started or drives. `fresh`: it was just created, so
   * everything it does counts; otherwise only what happens from now on.
   */
  watch(id: string, fresh: boolean): void {
    if (this._watches.has(id)) {
      return;
    }
    const model = this.acquire(id);
    const watch: IWatch = {
      model,
      state: fresh ? emptyState(id) : model.state,
      sent: new Set(),
      ready: fresh
    };
    this._watches.set(id, watch);
    model.eventsAdded.connect(this._onEvents, this);
    model.statusChanged.connect(this._onStatus, this);
    this._watchedChanged.emit(this.watched);
    model
      .load()
      .then(() => {
        if (!watch.ready) {
          watch.state = model.state;
          watch.ready = true;
        }
        if (model.state.deleted) {
          this.unwatch(id);
        }
      })
      .catch(error => {
        console.warn(`jupyter-convo: cannot watch conversation ${id}`, error);
        this.unwatch(id);
      });
  }

  unwatch(id: string): void {
    const watch = this._watches.get(id);
    if (!watch) {
      return;
    }
    this._watches.delete(id);
    watch.model.eventsAdded.disconnect(this._onEvents, this);
    watch.model.statusChanged.disconnect(this._onStatus, this);
    this.release(id);
    this._watchedChanged.emit(this.watched);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    for (const { model } of this._models.values()) {
      model.dispose();
    }
    this._models.clear();
    this._watches.clear();
    Signal.clearData(this);
  }

  private _onStateChanged(
    model: ConversationModel,
    change: IStateChange
  ): void {
    this._stateChanged.emit(change);
    if (change.next.deleted) {
      this.unwatch(model.id);
    }
  }

  private _onEvents(model: ConversationModel, events: IEvent[]): void {
    const watch = this._watches.get(model.id);
    if (!watch || !watch.ready) {
      return; // history from the first load of a conversation watched from now on
    }
    for (const event of events) {
      const next = reduceEvent(watch.state, event);
      const notice = noticeFor(watch.state, next);
      watch.state = next;
      if (notice) {
        this._raise(watch, notice);
      }
    }
  }

  private _onStatus(model: ConversationModel): void {
    const watch = this._watches.get(model.id);
    const task = model.startTask;
    if (watch && task && task.status === 'ERROR') {
      this._raise(watch, {
        kind: 'failed',
        key: `start@${task.id}`,
        message: `Conversation ${model.id.slice(0, 8)} could not start: ${task.detail ?? 'unknown error'}`
      });
    }
  }

  private _raise(watch: IWatch, notice: INotice): void {
    if (watch.sent.has(notice.key)) {
      return;
    }
    watch.sent.add(notice.key);
    const id = watch.model.id;
    this._noticeRaised.emit({ id, notice });
    if (SETTLING_NOTICES.has(notice.kind)) {
      this.unwatch(id);
    }
  }

  private _options: ConversationModel.IOptions;
  private _models = new Map<
    string,
    { model: ConversationModel; holders: number }
  >();
  private _watches = new Map<string, IWatch>();
  private _isDisposed = false;
  private _stateChanged = new Signal<this, IStateChange>(this);
  private _noticeRaised = new Signal<this, IConversationNotice>(this);
  private _watchedChanged = new Signal<this, string[]>(this);
}
