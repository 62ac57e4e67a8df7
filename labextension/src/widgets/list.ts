/**
 * The conversation list: one focusable row per conversation (title, status badge,
 * relative time, cost), arrow keys to move, Enter to open, infinite scroll for more pages.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { formatCost, relativeTime } from '../models/format';
import { ConversationListModel } from '../models/list';
import { displayState } from '../models/state';
import { h } from '../render/events';
import { IConversation } from '../types';

/** Pixels from the bottom at which the next page is fetched. */
const SCROLL_MARGIN = 80;

export class ConversationListWidget extends Widget {
  constructor(options: ConversationListWidget.IOptions) {
    super();
    this.addClass('jp-convo-list-widget');
    this._model = options.model;
    this._onOpen = options.onOpen;
    this._list = h('ul', 'jp-convo-list');
    this._list.setAttribute('role', 'listbox');
    this._list.setAttribute('aria-label', 'Conversations');
    this._footer = h('div', 'jp-convo-list-footer');
    this._more = h('button', 'jp-convo-more jp-mod-styled', 'Load more');
    (this._more as HTMLButtonElement).type = 'button';
    this._more.addEventListener('click', () => void this._model.loadMore());
    this.node.append(this._list, this._footer);
    this._model.changed.connect(this.update, this);
  }

  /** Focus the selected (else first) row. */
  focusList(): void {
    const rows = this._rows();
    const target =
      rows.find(row => row.dataset.id === this._selected) ?? rows[0];
    target?.focus();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.node.addEventListener('scroll', this, { passive: true });
    this._list.addEventListener('click', this);
    this._list.addEventListener('keydown', this);
    this.update();
  }

  protected onBeforeDetach(msg: Message): void {
    this.node.removeEventListener('scroll', this);
    this._list.removeEventListener('click', this);
    this._list.removeEventListener('keydown', this);
    super.onBeforeDetach(msg);
  }

  handleEvent(event: Event): void {
    switch (event.type) {
      case 'scroll':
        this._maybeLoadMore();
        break;
      case 'click':
        this._onClick(event as MouseEvent);
        break;
      case 'keydown':
        this._onKeydown(event as KeyboardEvent);
        break;
    }
  }

  protected onUpdateRequest(msg: Message): void {
    const { items, loaded, query, nextPageId } = this._model.state;
    const focusedId =
      document.activeElement instanceof HTMLElement &&
      this._list.contains(document.activeElement)
        ? document.activeElement.dataset.id
        : undefined;
    const now = Date.now();
    this._list.replaceChildren(...items.map(item => this._row(item, now)));
    if (focusedId) {
      this._rows()
        .find(row => row.dataset.id === focusedId)
        ?.focus();
    }
    let footer: (Node | string)[] = [];
    if (this._model.problem) {
      footer = [];
    } else if (!loaded || this._model.loading) {
      footer = ['Loading…'];
    } else if (!items.length) {
      footer = [
        query
          ? `No conversation title contains "${query}".`
          : 'No conversations yet. Start one with "New".'
      ];
    } else if (nextPageId !== null) {
      footer = [this._more];
    }
    this._footer.replaceChildren(...footer);
    // A short first page may not fill the panel: fetch more until it scrolls.
    requestAnimationFrame(() => this._maybeLoadMore());
  }

  private _row(item: IConversation, now: number): HTMLElement {
    const state = displayState(item.status, item.agent_state);
    const title = item.title || 'Untitled conversation';
    const badge = h(
      'span',
      `jp-convo-badge jp-convo-badge-${state}`,
      state.replace(/_/g, ' ')
    );
    const time = h('span', 'jp-convo-time', relativeTime(item.updated_at, now));
    time.title = new Date(item.updated_at).toLocaleString();
    const meta = h(
      'div',
      'jp-convo-list-meta',
      badge,
      time,
      h('span', 'jp-convo-cost', formatCost(item.cost)),
      item.model ? h('span', 'jp-convo-model', item.model) : null
    );
    const row = h(
      'li',
      'jp-convo-list-item',
      h('div', 'jp-convo-list-title', h('span', 'jp-convo-title-text', title)),
      meta
    );
    row.dataset.id = item.id;
    row.tabIndex = 0;
    row.title = item.error ? `${title}\n${item.error}` : title;
    row.setAttribute('role', 'option');
    row.setAttribute('aria-selected', String(item.id === this._selected));
    if (item.id === this._selected) {
      row.classList.add('jp-mod-selected');
    }
    return row;
  }

  private _rows(): HTMLElement[] {
    return Array.from(
      this._list.querySelectorAll<HTMLElement>('.jp-convo-list-item')
    );
  }

  /** Mark the row of conversation `id` selected (the active view's; null: none). */
  select(id: string | null): void {
    this._selected = id;
    this._rows().forEach(row => {
      const selected = id !== null && row.dataset.id === id;
      row.classList.toggle('jp-mod-selected', selected);
      row.setAttribute('aria-selected', String(selected));
    });
  }

  private _open(row: HTMLElement): void {
    const id = row.dataset.id;
    if (id) {
      this.select(id);
      this._onOpen(id);
    }
  }

  private _onClick(event: MouseEvent): void {
    const row = (event.target as HTMLElement).closest<HTMLElement>(
      '.jp-convo-list-item'
    );
    if (row) {
      this._open(row);
    }
  }

  private _onKeydown(event: KeyboardEvent): void {
    const rows = this._rows();
    const current = (event.target as HTMLElement).closest<HTMLElement>(
      '.jp-convo-list-item'
    );
    if (!current) {
      return;
    }
    const index = rows.indexOf(current);
    let target: HTMLElement | undefined;
    switch (event.key) {
      case 'Enter':
      case ' ':
        this._open(current);
        break;
      case 'ArrowDown':
        target = rows[index + 1];
        break;
      case 'ArrowUp':
        target = rows[index - 1];
        break;
      case 'Home':
        target = rows[0];
        break;
      case 'End':
        target = rows[rows.length - 1];
        break;
      default:
        return;
    }
    event.preventDefault();
    event.stopPropagation();
    target?.focus();
    if (target === rows[rows.length - 1]) {
      void this._model.loadMore();
    }
  }

  private _maybeLoadMore(): void {
    const node = this.node;
    if (!this.isVisible || this._model.state.nextPageId === null) {
      return;
    }
    if (
      node.scrollHeight - node.scrollTop - node.clientHeight <
      SCROLL_MARGIN
    ) {
      void this._model.loadMore();
    }
  }

  private _model: ConversationListModel;
  private _onOpen: (id: string) => void;
  private _list: HTMLElement;
  private _footer: HTMLElement;
  private _more: HTMLElement;
  private _selected: string | null = null;
}

export namespace ConversationListWidget {
  export interface IOptions {
    model: ConversationListModel;
    onOpen: (id: string) => void;
  }
}
