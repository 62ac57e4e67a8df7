/**
 * The conversation list: title search, pages fetched as the user scrolls, the first page
 * refreshed periodically, and rows updated live from the conversations being watched.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { ConvoAPI } from '../api';
import { APIError } from '../handler';
import { IConversation } from '../types';
import {
  IListState,
  emptyList,
  withConversation,
  withPage,
  withRefreshedFirstPage,
  withoutConversation
} from './paging';

/** Why the list cannot be shown: the server extension is missing, or another error. */
export interface IListProblem {
  missingExtension: boolean;
  message: string;
}

export class ConversationListModel implements IDisposable {
  constructor(options: ConversationListModel.IOptions = {}) {
    this.pageSize = options.pageSize ?? 20;
  }

  /** Conversations per page. */
  pageSize: number;

  get state(): IListState {
    return this._state;
  }

  get problem(): IListProblem | null {
    return this._problem;
  }

  get loading(): boolean {
    return this._loading > 0;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Search titles for `query` (empty: everything) from the first page. */
  async search(query: string): Promise<void> {
    this._state = emptyList(query.trim());
    this._changed.emit();
    await this._fetch(false);
  }

  /** The first page again, merged into what is loaded. */
  async refresh(): Promise<void> {
    await this._fetch(false, true);
  }

  /** The next page, if any. */
  async loadMore(): Promise<void> {
    if (this._state.nextPageId === null || this._loadingMore) {
      return;
    }
    this._loadingMore = true;
    try {
      await this._fetch(true);
    } finally {
      this._loadingMore = false;
    }
  }

  /** A conversation changed (or appeared) here: update its row. */
  upsert(conversation: IConversation): void {
    const next = withConversation(this._state, conversation);
    if (next !== this._state) {
      this._state = next;
      this._changed.emit();
    }
  }

  remove(id: string): void {
    const next = withoutConversation(this._state, id);
    if (next !== this._state) {
      this._state = next;
      this._changed.emit();
    }
  }

  find(id: string): IConversation | undefined {
    return this._state.items.find(item => item.id === id);
  }

  dispose(): void {
    if (!this._isDisposed) {
      this._isDisposed = true;
      Signal.clearData(this);
    }
  }

  private async _fetch(append: boolean, merge = false): Promise<void> {
    const query = this._state.query;
    this._loading++;
    this._changed.emit();
    try {
      const page = await ConvoAPI.searchConversations({
        title__contains: query || undefined,
        limit: this.pageSize,
        page_id: append ? this._state.nextPageId : null
      });
      if (this._isDisposed || query !== this._state.query) {
        return; // a newer search replaced this one
      }
      this._state = merge
        ? withRefreshedFirstPage(this._state, page)
        : withPage(this._state, page, append);
      this._problem = null;
    } catch (error) {
      this._problem = describeProblem(error);
    } finally {
      this._loading--;
      if (!this._isDisposed) {
        this._changed.emit();
      }
    }
  }

  private _state: IListState = emptyList();
  private _problem: IListProblem | null = null;
  private _loading = 0;
  private _loadingMore = false;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}

export namespace ConversationListModel {
  export interface IOptions {
    pageSize?: number;
  }
}

/** What to tell the user about a failed list request. */
export function describeProblem(error: unknown): IListProblem {
  if (error instanceof APIError && error.missing) {
    return {
      missingExtension: true,
      message:
        'The jupyter-convo server extension is not running on this server.'
    };
  }
  if (error instanceof ServerConnection.NetworkError) {
    return {
      missingExtension: false,
      message: `Cannot reach the Jupyter server: ${error.message}`
    };
  }
  if (error instanceof APIError || error instanceof Error) {
    return { missingExtension: false, message: error.message };
  }
  return {
    missingExtension: false,
    message: `Cannot reach the server: ${String(error)}`
  };
}
