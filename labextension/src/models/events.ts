/**
 * The window of a conversation's events a view holds: the newest page first (loaded in
 * reverse), earlier pages on demand, live events appended. Ids are unique and increasing;
 * events arriving twice (a reconnect, a page overlapping the stream) are dropped.
 */
import { IEvent, IEventPage } from '../types';

export interface IEventWindow {
  /** Logged events in id order. */
  events: IEvent[];
  /** Older events exist before `events[0]`. */
  hasEarlier: boolean;
}

export function emptyWindow(): IEventWindow {
  return { events: [], hasEarlier: false };
}

function lastId(window: IEventWindow): number {
  const events = window.events;
  return events.length ? events[events.length - 1].id : -1;
}

/** The id the next earlier page ends before (the oldest id held). */
export function oldestId(window: IEventWindow): number | null {
  return window.events.length ? window.events[0].id : null;
}

/**
 * Live (or newest) events appended; answers the new window and the events actually added
 * (logged, past the last id held), in order.
 */
export function appendEvents(
  window: IEventWindow,
  incoming: IEvent[]
): { window: IEventWindow; added: IEvent[] } {
  let last = lastId(window);
  const added: IEvent[] = [];
  for (const event of [...incoming].sort((a, b) => a.id - b.id)) {
    if (event.id >= 0 && event.id > last) {
      added.push(event);
      last = event.id;
    }
  }
  if (!added.length) {
    return { window, added };
  }
  return { window: { ...window, events: [...window.events, ...added] }, added };
}

/** The newest page (`reverse=true`: newest first) as the first window. */
export function fromNewestPage(page: IEventPage): IEventWindow {
  const events = [...page.items]
    .filter(e => e.id >= 0)
    .sort((a, b) => a.id - b.id);
  return { events, hasEarlier: page.next_page_id !== null };
}

/**
 * An earlier page (`reverse=true, before_id=oldest`) prepended; answers the new window and
 * the events added, in order.
 */
export function prependPage(
  window: IEventWindow,
  page: IEventPage
): { window: IEventWindow; added: IEvent[] } {
  const oldest = oldestId(window);
  const added = page.items
    .filter(e => e.id >= 0 && (oldest === null || e.id < oldest))
    .sort((a, b) => a.id - b.id);
  return {
    window: {
      events: [...added, ...window.events],
      hasEarlier: page.next_page_id !== null
    },
    added
  };
}
