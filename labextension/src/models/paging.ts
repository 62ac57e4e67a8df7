/**
 * The conversation list as pure state: pages appended as the user scrolls, a periodic
 * refresh of the first page merged in, and live updates of single rows.
 *
 * Order is the server's: newest `updated_at` first, then `id` descending (keyset paging).
 */
import { IConversation, IConversationPage } from '../types';

export interface IListState {
  /** The title search the items match ('' for all). */
  query: string;
  items: IConversation[];
  /** Cursor of the next page; null when everything matching is loaded. */
  nextPageId: string | null;
  /** A first page arrived for this query. */
  loaded: boolean;
}

export function emptyList(query = ''): IListState {
  return { query, items: [], nextPageId: null, loaded: false };
}

function time(value: string): number {
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? 0 : parsed;
}

/** Negative when `a` comes before `b` in the list (newer first, then larger id). */
export function compareConversations(
  a: IConversation,
  b: IConversation
): number {
  const byTime = time(b.updated_at) - time(a.updated_at);
  if (byTime !== 0) {
    return byTime;
  }
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Whether a conversation matches a title search (case-insensitive substring). */
export function matchesQuery(
  conversation: IConversation,
  query: string
): boolean {
  if (!query) {
    return true;
  }
  return (conversation.title ?? '').toLowerCase().includes(query.toLowerCase());
}

/** A page for the current query: the first one replaces the items, later ones append. */
export function withPage(
  state: IListState,
  page: IConversationPage,
  append: boolean
): IListState {
  if (!append) {
    return {
      ...state,
      items: [...page.items],
      nextPageId: page.next_page_id,
      loaded: true
    };
  }
  const seen = new Set(state.items.map(item => item.id));
  const added = page.items.filter(item => !seen.has(item.id));
  return {
    ...state,
    items: [...state.items, ...added],
    nextPageId: page.next_page_id,
    loaded: true
  };
}

/**
 * Merge a freshly fetched first page into a list that may hold more pages: the fresh page
 * wins for everything up to its last row (new rows appear, deleted ones vanish, changed
 * ones move); rows loaded from later pages stay below it.
 */
export function withRefreshedFirstPage(
  state: IListState,
  page: IConversationPage
): IListState {
  if (!state.loaded || page.next_page_id === null || !page.items.length) {
    return withPage(state, page, false);
  }
  const fresh = new Set(page.items.map(item => item.id));
  const boundary = page.items[page.items.length - 1];
  const rest = state.items.filter(
    item => !fresh.has(item.id) && compareConversations(boundary, item) < 0
  );
  return {
    ...state,
    items: [...page.items, ...rest],
    nextPageId: rest.length ? state.nextPageId : page.next_page_id,
    loaded: true
  };
}

/**
 * A live change of one conversation: replaced (and moved into order) when listed; added
 * when it matches the search and falls within what is loaded.
 */
export function withConversation(
  state: IListState,
  conversation: IConversation
): IListState {
  const others = state.items.filter(item => item.id !== conversation.id);
  const listed = others.length !== state.items.length;
  if (!matchesQuery(conversation, state.query)) {
    return listed ? { ...state, items: others } : state;
  }
  const last = others[others.length - 1];
  const withinLoaded =
    state.nextPageId === null ||
    (last !== undefined && compareConversations(conversation, last) < 0);
  if (!listed && !withinLoaded) {
    return state; // a later page will bring it
  }
  const items = [...others, conversation].sort(compareConversations);
  return { ...state, items };
}

/** A conversation deleted. */
export function withoutConversation(state: IListState, id: string): IListState {
  const items = state.items.filter(item => item.id !== id);
  return items.length === state.items.length ? state : { ...state, items };
}
