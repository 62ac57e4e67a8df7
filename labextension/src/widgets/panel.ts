/**
 * The side panel: header (New, Refresh), the new-conversation form, title search and the
 * conversation list. While visible, the list's first page refreshes periodically; if the
 * server extension is missing, the panel says so and how to fix it.
 */
import { fileUploadIcon, refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { ConversationListModel, describeProblem } from '../models/list';
import { h } from '../render/events';
import { ICreateConversation } from '../types';
import { IFormDefaults, NewConversationForm } from './form';
import { convoIcon } from './icons';
import { ConversationListWidget } from './list';

const SEARCH_DEBOUNCE_MS = 250;

export class ConvoPanel extends Panel {
  constructor(options: ConvoPanel.IOptions) {
    super();
    this.id = 'jupyter-convo-panel';
    this.addClass('jp-convo-panel');
    this.title.icon = convoIcon;
    this.title.caption = 'Conversations';
    this.model = options.model;
    this._defaults = options.defaults;
    this._onImport = options.onImport;
    this.refreshInterval = options.refreshInterval ?? 5;

    this._header = new Widget({ node: this._headerNode() });
    this._header.addClass('jp-convo-panel-header');
    this._banner = new Widget();
    this._banner.addClass('jp-convo-banner');
    this._banner.node.setAttribute('role', 'alert');
    this._banner.hide();

    this.form = new NewConversationForm({
      defaults: options.defaults(),
      onSubmit: async body => {
        this.form.setBusy(true);
        try {
          await options.onCreate(body);
          this.form.hide(); // the new conversation's view has the focus now
        } catch (error) {
          this.form.setError(describeProblem(error).message);
        } finally {
          this.form.setBusy(false);
        }
      },
      onCancel: () => this.hideForm(),
      currentFolder: options.currentFolder
    });
    this.form.hide();

    this._search = document.createElement('input');
    this._search.type = 'search';
    this._search.className = 'jp-convo-search jp-mod-styled';
    this._search.placeholder = 'Search titles';
    this._search.setAttribute('aria-label', 'Search conversation titles');
    this._search.addEventListener('input', () => this._onSearchInput());
    this._search.addEventListener('keydown', event => {
      if (event.key === 'ArrowDown') {
        event.preventDefault();
        this.list.focusList();
      } else if (event.key === 'Escape' && this._search.value) {
        event.preventDefault();
        this._search.value = '';
        this._onSearchInput();
      }
    });
    const searchBox = new Widget({
      node: h('div', 'jp-convo-search-box', this._search)
    });

    this.list = new ConversationListWidget({
      model: this.model,
      onOpen: options.onOpen
    });

    this.addWidget(this._header);
    this.addWidget(this._banner);
    this.addWidget(this.form);
    this.addWidget(searchBox);
    this.addWidget(this.list);
    this.model.changed.connect(this._onModelChanged, this);
  }

  readonly model: ConversationListModel;
  readonly form: NewConversationForm;
  readonly list: ConversationListWidget;
  /** Seconds between refreshes of the first page while the panel is visible (0: never). */
  get refreshInterval(): number {
    return this._refreshInterval;
  }

  set refreshInterval(seconds: number) {
    this._refreshInterval = seconds;
    if (this.isVisible) {
      this._startPolling();
    }
  }

  /** Open the form (defaults restored) and put the cursor in the task. */
  showForm(): void {
    if (this.form.isHidden) {
      this.form.reset(this._defaults());
      this.form.show();
    }
    this.form.focusTask();
  }

  hideForm(): void {
    this.form.hide();
    this._newButton.focus();
  }

  /** Focus the search box (optionally with a query). */
  focusSearch(query?: string): void {
    if (query !== undefined) {
      this._search.value = query;
      this._onSearchInput();
    }
    this._search.focus();
    this._search.select();
  }

  /** Reload the list (and find out again whether the server extension is there). */
  refresh(): Promise<void> {
    return this.model.state.loaded
      ? this.model.refresh()
      : this.model.search(this._search.value);
  }

  dispose(): void {
    this._stopPolling();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (!this.model.state.loaded) {
      void this.model.search(this._search.value);
    } else {
      void this.model.refresh();
    }
    this._startPolling();
  }

  protected onAfterHide(msg: Message): void {
    this._stopPolling();
    super.onAfterHide(msg);
  }

  protected onActivateRequest(msg: Message): void {
    if (!this.form.isHidden) {
      this.form.focusTask();
    } else {
      this._search.focus();
    }
  }

  private _headerNode(): HTMLElement {
    this._newButton = this._button(
      'New',
      'jp-convo-new',
      'Start a new conversation'
    );
    this._newButton.addEventListener('click', () => this.showForm());
    const importButton = this._button(
      '',
      'jp-convo-import',
      'Import a conversation (an export zip)'
    );
    importButton.append(
      fileUploadIcon.element({ tag: 'span', className: 'jp-convo-button-icon' })
    );
    importButton.setAttribute('aria-label', 'Import a conversation');
    const picker = document.createElement('input');
    picker.type = 'file';
    picker.accept = '.zip,application/zip';
    picker.className = 'jp-convo-import-file';
    picker.hidden = true;
    picker.addEventListener('change', () => {
      const file = picker.files?.[0];
      picker.value = '';
      if (file) {
        void this._onImport(file);
      }
    });
    importButton.addEventListener('click', () => picker.click());
    const refresh = this._button('', 'jp-convo-refresh', 'Refresh the list');
    refresh.append(
      refreshIcon.element({ tag: 'span', className: 'jp-convo-button-icon' })
    );
    refresh.setAttribute('aria-label', 'Refresh the list');
    refresh.addEventListener('click', () => void this.refresh());
    return h(
      'div',
      '',
      h('h2', 'jp-convo-panel-title', 'Conversations'),
      h(
        'div',
        'jp-convo-panel-buttons',
        this._newButton,
        importButton,
        picker,
        refresh
      )
    );
  }

  private _button(
    text: string,
    className: string,
    title: string
  ): HTMLButtonElement {
    const button = h(
      'button',
      `jp-convo-button ${className}`,
      text
    ) as HTMLButtonElement;
    button.type = 'button';
    button.title = title;
    return button;
  }

  private _onSearchInput(): void {
    window.clearTimeout(this._searchTimer);
    this._searchTimer = window.setTimeout(() => {
      void this.model.search(this._search.value);
    }, SEARCH_DEBOUNCE_MS);
  }

  private _onModelChanged(): void {
    const problem = this.model.problem;
    if (!problem) {
      this._banner.hide();
      return;
    }
    const body: (Node | string)[] = [
      h('p', 'jp-convo-banner-title', problem.message)
    ];
    if (problem.missingExtension) {
      body.push(
        h(
          'p',
          '',
          'Install it and enable it on the server, then restart JupyterLab:'
        ),
        h(
          'pre',
          'jp-convo-fix',
          'pip install jupyter-convo\njupyter server extension enable jupyter_convo'
        )
      );
    }
    this._banner.node.replaceChildren(...body);
    this._banner.show();
  }

  private _startPolling(): void {
    this._stopPolling();
    if (this._refreshInterval > 0) {
      this._pollTimer = window.setInterval(() => {
        if (this.isVisible && !this.model.problem?.missingExtension) {
          void this.model.refresh();
        }
      }, this._refreshInterval * 1000);
    }
  }

  private _stopPolling(): void {
    if (this._pollTimer) {
      window.clearInterval(this._pollTimer);
      this._pollTimer = 0;
    }
  }

  private _defaults: () => IFormDefaults;
  private _refreshInterval = 5;
  private _onImport: (file: File) => Promise<void>;
  private _header: Widget;
  private _banner: Widget;
  private _search: HTMLInputElement;
  private _newButton!: HTMLButtonElement;
  private _searchTimer = 0;
  private _pollTimer = 0;
}

export namespace ConvoPanel {
  export interface IOptions {
    model: ConversationListModel;
    defaults: () => IFormDefaults;
    onOpen: (id: string) => void;
    /** Create the conversation; a rejection's message is shown in the form. */
    onCreate: (body: ICreateConversation) => Promise<void>;
    currentFolder: () => string;
    /** Import an export zip (a conversation shared by someone). */
    onImport: (file: File) => Promise<void>;
    refreshInterval?: number;
  }
}
