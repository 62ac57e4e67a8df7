/**
 * A list of event rows that grows at both ends: new events stream in at the end, earlier
 * ones are prepended on demand, and the oldest can be removed to keep a long run light.
 * Shared by the panel's conversation view and the notebook widget. An event is shown once
 * however often it arrives (a reconnect or a second batch repeats nothing), and an action
 * stops saying it waits as soon as its answer is known, whichever arrived first.
 */
import { IEvent } from '../types';
import { IRenderContext } from './context';
import { h } from './dom';
import { markAnswered, renderEvent } from './events';

export class EventList {
  constructor(private readonly _ctx: IRenderContext) {
    this.node = h('div', 'jp-convo-events');
    this.node.setAttribute('role', 'log');
    this.node.setAttribute('aria-live', 'polite');
  }

  /** The rows' container. */
  readonly node: HTMLElement;

  /** Rows on screen. */
  get rowCount(): number {
    return this.node.childElementCount;
  }

  /** Ids of the events on screen, in order. */
  get ids(): number[] {
    return Array.from(this.node.children, row =>
      Number((row as HTMLElement).dataset.eventId)
    );
  }

  /** The id of the oldest row on screen, or null when empty. */
  get firstId(): number | null {
    const first = this.node.firstElementChild as HTMLElement | null;
    return first ? Number(first.dataset.eventId) : null;
  }

  /** Add events after the rows on screen (events already shown are skipped). */
  append(events: Iterable<IEvent>): void {
    this.node.appendChild(this._render(events));
  }

  /** Add earlier events before the rows on screen. */
  prepend(events: Iterable<IEvent>): void {
    this.node.prepend(this._render(events));
  }

  /** Remove every row. */
  clear(): void {
    this.node.replaceChildren();
    this._shown.clear();
  }

  /** Remove the rows of events older than `id`; how many were removed. */
  removeBefore(id: number): number {
    let removed = 0;
    let first = this.node.firstElementChild as HTMLElement | null;
    while (first && Number(first.dataset.eventId) < id) {
      this._shown.delete(Number(first.dataset.eventId));
      first.remove();
      removed++;
      first = this.node.firstElementChild as HTMLElement | null;
    }
    return removed;
  }

  private _render(events: Iterable<IEvent>): DocumentFragment {
    const fragment = document.createDocumentFragment();
    const added: HTMLElement[] = [];
    for (const event of events) {
      if (event.kind === 'confirmation' && event.cause !== null) {
        this._answers.set(event.cause, event.confirmed);
        this._markRow(event.cause);
      }
      if (event.id < 0 || this._shown.has(event.id)) {
        continue;
      }
      const row = renderEvent(event, this._ctx);
      if (row) {
        this._shown.add(event.id);
        fragment.appendChild(row);
        added.push(row);
      }
    }
    for (const row of added) {
      const answer = this._answers.get(Number(row.dataset.eventId));
      if (answer !== undefined) {
        markAnswered(row, answer);
      }
    }
    return fragment;
  }

  private _markRow(actionId: number): void {
    const row = this.node.querySelector<HTMLElement>(
      `.jp-convo-row[data-event-id="${actionId}"]`
    );
    const answer = this._answers.get(actionId);
    if (row && answer !== undefined) {
      markAnswered(row, answer);
    }
  }

  private _shown = new Set<number>();
  private _answers = new Map<number, boolean>();
}
