import {
  compareConversations,
  emptyList,
  matchesQuery,
  withConversation,
  withPage,
  withRefreshedFirstPage,
  withoutConversation
} from '../models/paging';
import { conversation } from './fixtures';

const at = (minute: number) =>
  `2025-03-01T12:${String(minute).padStart(2, '0')}:00.000000Z`;

/** Conversations c9 (newest) .. c0 (oldest). */
const all = Array.from({ length: 10 }, (_, i) =>
  conversation(`c${i}`, at(i))
).reverse();
const ids = (items: { id: string }[]) => items.map(item => item.id);

describe('list paging', () => {
  it('replaces on a first page and appends later pages without duplicates', () => {
    let state = withPage(
      emptyList(),
      { items: all.slice(0, 4), next_page_id: 'p2' },
      false
    );
    expect(state.loaded).toBe(true);
    expect(state.nextPageId).toBe('p2');
    state = withPage(
      state,
      { items: all.slice(3, 8), next_page_id: 'p3' },
      true
    );
    expect(ids(state.items)).toEqual(ids(all.slice(0, 8)));
    state = withPage(state, { items: all.slice(8), next_page_id: null }, true);
    expect(ids(state.items)).toEqual(ids(all));
    expect(state.nextPageId).toBeNull();
  });

  it('merges a refreshed first page above the later pages already loaded', () => {
    let state = withPage(
      emptyList(),
      { items: all.slice(0, 4), next_page_id: 'p2' },
      false
    );
    state = withPage(
      state,
      { items: all.slice(4, 8), next_page_id: 'p3' },
      true
    );
    // c5 was updated (moves to the top); c8 was deleted; a new c10 appeared.
    const c10 = conversation('c10', at(30));
    const c5 = { ...all[4], updated_at: at(20) };
    const fresh = [c10, c5, all[0], all[2]];
    state = withRefreshedFirstPage(state, { items: fresh, next_page_id: 'q2' });
    expect(ids(state.items)).toEqual([
      'c10',
      'c5',
      'c9',
      'c7',
      'c6',
      'c4',
      'c3',
      'c2'
    ]);
    expect(state.nextPageId).toBe('p3');
  });

  it('takes a refreshed page that holds everything as the whole list', () => {
    let state = withPage(
      emptyList(),
      { items: all.slice(0, 4), next_page_id: 'p2' },
      false
    );
    state = withRefreshedFirstPage(state, {
      items: all.slice(1, 3),
      next_page_id: null
    });
    expect(ids(state.items)).toEqual(['c8', 'c7']);
    expect(state.nextPageId).toBeNull();
  });

  it('moves a live-updated row into order and adds new matching rows', () => {
    let state = withPage(
      emptyList(),
      { items: all.slice(0, 4), next_page_id: 'p2' },
      false
    );
    state = withConversation(state, { ...all[3], updated_at: at(40) });
    expect(ids(state.items)).toEqual(['c6', 'c9', 'c8', 'c7']);
    state = withConversation(state, conversation('c11', at(50)));
    expect(ids(state.items)[0]).toBe('c11');
  });

  it('leaves rows beyond the loaded pages to the pages that bring them', () => {
    const state = withPage(
      emptyList(),
      { items: all.slice(0, 4), next_page_id: 'p2' },
      false
    );
    expect(withConversation(state, all[9])).toBe(state);
  });

  it('honours the title search for live rows', () => {
    let state = withPage(
      emptyList('sales'),
      { items: [], next_page_id: null },
      false
    );
    state = withConversation(
      state,
      conversation('a', at(1), { title: 'Plot Sales by month' })
    );
    state = withConversation(
      state,
      conversation('b', at(2), { title: 'Other work' })
    );
    expect(ids(state.items)).toEqual(['a']);
    // Renamed away from the search: it leaves the list.
    state = withConversation(
      state,
      conversation('a', at(3), { title: 'Plot revenue' })
    );
    expect(state.items).toEqual([]);
  });

  it('removes deleted conversations', () => {
    const state = withPage(
      emptyList(),
      { items: all.slice(0, 3), next_page_id: null },
      false
    );
    expect(ids(withoutConversation(state, 'c8').items)).toEqual(['c9', 'c7']);
    expect(withoutConversation(state, 'missing')).toBe(state);
  });

  it('orders newest first, then by id', () => {
    const a = conversation('a', at(1));
    const b = conversation('b', at(1));
    expect(compareConversations(b, a)).toBeLessThan(0);
    expect(compareConversations(conversation('z', at(0)), a)).toBeGreaterThan(
      0
    );
    expect(matchesQuery(a, 'CONVERSATION')).toBe(true);
  });
});
