/**
 * The new-conversation form: task, model, sandbox, workspace folder, confirmation mode.
 * Ctrl/Cmd+Enter starts, Escape cancels; a refused start shows the server's reason here.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h } from '../render/events';
import { ICreateConversation, ISandboxKind } from '../types';

/** Defaults the form starts from (the extension's settings). */
export interface IFormDefaults {
  model: string;
  /** A sandbox kind the server offers; '' for the server's default. */
  sandbox: string;
  confirmationMode: boolean;
}

export class NewConversationForm extends Widget {
  constructor(options: NewConversationForm.IOptions) {
    super({ node: document.createElement('form') });
    this.addClass('jp-convo-form');
    this.node.setAttribute('aria-label', 'New conversation');
    this._onSubmit = options.onSubmit;
    this._onCancel = options.onCancel;
    this._currentFolder = options.currentFolder;

    this._task = document.createElement('textarea');
    this._task.className = 'jp-convo-task jp-mod-styled';
    this._task.name = 'task';
    this._task.rows = 4;
    this._task.required = true;
    this._task.placeholder =
      'What should the agent do? e.g. clean sales.csv and plot revenue by month';

    this._model = this._input('model', 'Model (server default)');
    this._workspace = this._input(
      'workspace',
      "Folder (empty: the conversation's own)"
    );
    this._repository = this._input(
      'repository',
      'Git URL or path to clone (optional)'
    );
    this._branch = this._input('branch', 'Branch (default branch)');
    const useFolder = h(
      'button',
      'jp-convo-use-folder jp-mod-styled',
      'Current folder'
    ) as HTMLButtonElement;
    useFolder.type = 'button';
    useFolder.title = "Use the file browser's current folder";
    useFolder.addEventListener('click', () => {
      const folder = this._currentFolder();
      this._workspace.value = folder || '.';
    });

    // Filled from the server's `GET capabilities` (setSandboxes); until then, and when
    // nothing is chosen, the server's default sandbox.
    this._sandbox = document.createElement('select');
    this._sandbox.name = 'sandbox';
    this._sandbox.className = 'jp-mod-styled';
    this.setSandboxes([], null);

    this._confirm = document.createElement('input');
    this._confirm.type = 'checkbox';
    this._confirm.name = 'confirmation_mode';

    this._noNetwork = document.createElement('input');
    this._noNetwork.type = 'checkbox';
    this._noNetwork.name = 'no_network';

    this._error = h('div', 'jp-convo-form-error');
    this._error.setAttribute('role', 'alert');
    this._start = h(
      'button',
      'jp-convo-start-button jp-mod-styled jp-mod-accept',
      'Start'
    ) as HTMLButtonElement;
    this._start.type = 'submit';
    const cancel = h(
      'button',
      'jp-convo-cancel jp-mod-styled jp-mod-reject',
      'Cancel'
    ) as HTMLButtonElement;
    cancel.type = 'button';
    cancel.addEventListener('click', () => this._onCancel());

    this.node.append(
      this._field('Task', this._task),
      this._field('Model', this._model),
      this._field('Sandbox', this._sandbox),
      this._field('Repository', this._repository),
      this._field('Branch', this._branch),
      this._field(
        'Workspace',
        h('div', 'jp-convo-row-inputs', this._workspace, useFolder)
      ),
      h(
        'label',
        'jp-convo-check',
        this._confirm,
        ' Ask me to confirm risky actions'
      ),
      h(
        'label',
        'jp-convo-check',
        this._noNetwork,
        ' No network for its commands and Python'
      ),
      this._error,
      h('div', 'jp-convo-form-buttons', cancel, this._start)
    );
    this.reset(options.defaults);
  }

  /** Back to the defaults, empty task. */
  reset(defaults: IFormDefaults): void {
    this._task.value = '';
    this._model.value = defaults.model;
    this._defaultSandbox = defaults.sandbox;
    this._selectSandbox(defaults.sandbox);
    this._confirm.checked = defaults.confirmationMode;
    this._noNetwork.checked = false;
    this._workspace.value = '';
    this._repository.value = '';
    this._branch.value = '';
    this.setError('');
    this.setBusy(false);
  }

  /**
   * The sandbox kinds the server offers (`GET capabilities`); those it cannot run now are
   * shown disabled with the reason. The choice made so far is kept when still offered.
   */
  setSandboxes(kinds: ISandboxKind[], serverDefault: string | null): void {
    const chosen = this._sandbox.value || this._defaultSandbox;
    this._sandbox.replaceChildren();
    const fallback = document.createElement('option');
    fallback.value = '';
    fallback.textContent = serverDefault
      ? `Server default (${serverDefault})`
      : 'Server default';
    this._sandbox.appendChild(fallback);
    for (const kind of kinds) {
      const option = document.createElement('option');
      option.value = kind.kind;
      option.textContent = kind.description
        ? `${kind.kind}: ${kind.description}`
        : kind.kind;
      option.disabled = !kind.available;
      if (!kind.available && kind.reason) {
        option.title = kind.reason;
        option.textContent += ` (unavailable: ${kind.reason})`;
      }
      this._sandbox.appendChild(option);
    }
    this._selectSandbox(chosen);
  }

  /** The model placeholder: what the server will use when the field stays empty. */
  setModelHint(model: string | null): void {
    this._model.placeholder = model
      ? `Model (default: ${model})`
      : 'Model (server default)';
  }

  setError(message: string): void {
    this._error.textContent = message;
    this._error.hidden = !message;
  }

  setBusy(busy: boolean): void {
    this._start.disabled = busy;
    this._start.textContent = busy ? 'Starting…' : 'Start';
  }

  focusTask(): void {
    this._task.focus();
  }

  /** The request this form describes (empty optional fields left out). */
  request(): ICreateConversation {
    const body: ICreateConversation = {
      initial_message: this._task.value.trim(),
      confirmation_mode: this._confirm.checked,
      trigger: 'gui'
    };
    if (this._sandbox.value) {
      body.sandbox = this._sandbox.value;
    }
    const model = this._model.value.trim();
    if (model) {
      body.model = model;
    }
    const workspace = this._workspace.value.trim();
    if (workspace) {
      body.workspace = workspace;
    }
    const repository = this._repository.value.trim();
    if (repository) {
      body.repository = repository;
      const branch = this._branch.value.trim();
      if (branch) {
        body.branch = branch;
      }
    }
    if (this._noNetwork.checked) {
      body.network = false;
    }
    return body;
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.node.addEventListener('submit', this);
    this.node.addEventListener('keydown', this);
  }

  protected onBeforeDetach(msg: Message): void {
    this.node.removeEventListener('submit', this);
    this.node.removeEventListener('keydown', this);
    super.onBeforeDetach(msg);
  }

  handleEvent(event: Event): void {
    if (event.type === 'submit') {
      event.preventDefault();
      this._submit();
    } else if (event.type === 'keydown') {
      const key = event as KeyboardEvent;
      if (key.key === 'Escape') {
        key.preventDefault();
        key.stopPropagation();
        this._onCancel();
      } else if (key.key === 'Enter' && (key.ctrlKey || key.metaKey)) {
        key.preventDefault();
        key.stopPropagation();
        this._submit();
      }
    }
  }

  private _submit(): void {
    const body = this.request();
    if (!body.initial_message) {
      this.setError('Describe the task first.');
      this._task.focus();
      return;
    }
    this.setError('');
    void this._onSubmit(body);
  }

  /** Select `kind` if it is offered and available, else the server's default. */
  private _selectSandbox(kind: string): void {
    const offered = Array.from(this._sandbox.options).find(
      option => option.value === kind && !option.disabled
    );
    this._sandbox.value = offered ? kind : '';
  }

  private _input(name: string, placeholder: string): HTMLInputElement {
    const input = document.createElement('input');
    input.type = 'text';
    input.name = name;
    input.className = 'jp-mod-styled';
    input.placeholder = placeholder;
    input.spellcheck = false;
    return input;
  }

  private _field(label: string, control: HTMLElement): HTMLElement {
    const id = `jp-convo-form-${label.toLowerCase()}-${++Private.counter.value}`;
    const target =
      control instanceof HTMLInputElement ||
      control instanceof HTMLTextAreaElement ||
      control instanceof HTMLSelectElement
        ? control
        : control.querySelector('input');
    if (target) {
      target.id = id;
    }
    const labelNode = h('label', 'jp-convo-field-label', label);
    labelNode.setAttribute('for', id);
    return h('div', 'jp-convo-field', labelNode, control);
  }

  private _onSubmit: (body: ICreateConversation) => Promise<void>;
  private _onCancel: () => void;
  private _currentFolder: () => string;
  private _task: HTMLTextAreaElement;
  private _model: HTMLInputElement;
  private _workspace: HTMLInputElement;
  private _sandbox: HTMLSelectElement;
  private _defaultSandbox = '';
  private _confirm: HTMLInputElement;
  private _repository: HTMLInputElement;
  private _branch: HTMLInputElement;
  private _noNetwork: HTMLInputElement;
  private _error: HTMLElement;
  private _start: HTMLButtonElement;
}

export namespace NewConversationForm {
  export interface IOptions {
    defaults: IFormDefaults;
    onSubmit: (body: ICreateConversation) => Promise<void>;
    onCancel: () => void;
    /** The file browser's current folder ('' at the root). */
    currentFolder: () => string;
  }
}

namespace Private {
  /** Makes label targets unique when several forms exist. */
  export const counter = { value: 0 };
}
