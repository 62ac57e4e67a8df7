import {
  appendEvents,
  emptyWindow,
  fromNewestPage,
  oldestId,
  prependPage
} from '../models/events';
import { ev } from './fixtures';

const ids = (events: { id: number }[]) => events.map(e => e.id);

describe('event window', () => {
  it('starts from the newest page (sent newest first)', () => {
    const window = fromNewestPage({
      items: [ev(9, 'message'), ev(8, 'message'), ev(7, 'message')],
      next_page_id: 'more'
    });
    expect(ids(window.events)).toEqual([7, 8, 9]);
    expect(window.hasEarlier).toBe(true);
    expect(oldestId(window)).toBe(7);
  });

  it('appends live events once, in id order, skipping notices', () => {
    const start = fromNewestPage({
      items: [ev(1, 'message'), ev(0, 'message')],
      next_page_id: null
    });
    const { window, added } = appendEvents(start, [
      ev(1, 'message'),
      ev(3, 'message'),
      ev(-1, 'title'),
      ev(2, 'message')
    ]);
    expect(ids(added)).toEqual([2, 3]);
    expect(ids(window.events)).toEqual([0, 1, 2, 3]);
    expect(appendEvents(window, [ev(3, 'message')]).window).toBe(window);
  });

  it('prepends earlier pages and knows when the start is reached', () => {
    let window = fromNewestPage({
      items: [ev(5, 'message'), ev(4, 'message')],
      next_page_id: 'p'
    });
    const first = prependPage(window, {
      items: [ev(3, 'message'), ev(2, 'message'), ev(4, 'message')],
      next_page_id: 'p2'
    });
    window = first.window;
    expect(ids(first.added)).toEqual([2, 3]);
    expect(window.hasEarlier).toBe(true);
    const last = prependPage(window, {
      items: [ev(1, 'message'), ev(0, 'message')],
      next_page_id: null
    });
    expect(ids(last.window.events)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(last.window.hasEarlier).toBe(false);
  });

  it('has nothing to page before an empty window', () => {
    expect(oldestId(emptyWindow())).toBeNull();
  });
});
