/**
 * The events a notebook widget's model has received: one store per model, shared by all
 * its views (anywidget's `initialize`). New events are shown as they stream, even while
 * the kernel is busy in a cell (a `conv.wait()`): they come on IOPub, while an answer to
 * a request waits for the kernel to be idle. The store asks once for the kernel's window
 * (the last `max_rows` events) to fill in what came before it existed, and merges the
 * answer with what streamed meanwhile.
 */
import { IEvent } from '../types';
import { FromKernel, IWidgetModel } from './protocol';

/** What changed: new events at the end, or a new list (`reset`). */
export interface IStoreChange {
  reset: boolean;
  events: IEvent[];
}

let stores = 0;

export class EventStore {
  constructor(private readonly _model: IWidgetModel) {
    this.token = `s${++stores}-${Date.now().toString(36)}`;
    this._model.on('msg:custom', this._onMessage);
    this._model.send({ type: 'sync', view: this.token });
  }

  /** The store's name in the `sync` it sends. */
  readonly token: string;

  /** The newest events (at most `max_rows`), oldest first, without gaps. */
  get events(): IEvent[] {
    return this._events;
  }

  /** How many events the conversation has so far (the kernel's count). */
  get total(): number {
    return this._total;
  }

  /** Call `listener` on every change; returns the function that stops it. */
  connect(listener: (change: IStoreChange) => void): () => void {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  dispose(): void {
    this._model.off('msg:custom', this._onMessage);
    this._listeners.clear();
  }

  private _onMessage = (message: FromKernel): void => {
    if (message.type === 'append') {
      this._total = Math.max(this._total, message.total);
      if (message.gap) {
        this._events = this._tail(message.events);
        this._emit({ reset: true, events: this._events });
      } else {
        const last = this._events[this._events.length - 1]?.id ?? -Infinity;
        const added = message.events.filter(event => event.id > last);
        this._events = this._tail([...this._events, ...added]);
        this._emit({ reset: false, events: added });
      }
    } else if (message.type === 'window' && message.view === this.token) {
      this._total = Math.max(this._total, message.total);
      const byId = new Map<number, IEvent>();
      for (const event of [...message.events, ...this._events]) {
        byId.set(event.id, event);
      }
      const merged = [...byId.values()].sort((a, b) => a.id - b.id);
      this._events = this._tail(merged);
      this._emit({ reset: true, events: this._events });
    }
  };

  private _tail(events: IEvent[]): IEvent[] {
    const keep = Math.max(1, this._model.get('max_rows') || 200);
    return events.length > keep ? events.slice(-keep) : events;
  }

  private _emit(change: IStoreChange): void {
    for (const listener of [...this._listeners]) {
      listener(change);
    }
  }

  private _events: IEvent[] = [];
  private _total = 0;
  private _listeners = new Set<(change: IStoreChange) => void>();
}
