/**
 * What the extension's plugins share: the conversation context token, the settings and
 * the command ids.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { WidgetTracker } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ReadonlyPartialJSONObject, Token } from '@lumino/coreutils';

import { ConversationListModel } from './models/list';
import { ConversationRegistry } from './models/registry';
import { ConvoPanel } from './widgets/panel';
import { ConversationView, ViewCommands } from './widgets/view';

export const PLUGIN_ID = 'jupyter-convo:plugin';

export const CommandIDs = {
  showPanel: 'convo:show-panel',
  create: 'convo:new',
  open: 'convo:open',
  search: 'convo:search',
  refresh: 'convo:refresh',
  ...ViewCommands
} as const;

/** The extension's settings (schema/plugin.json). */
export interface IConvoSettings {
  refreshInterval: number;
  pageSize: number;
  eventPageSize: number;
  notifications: boolean;
  openMode: 'tab' | 'split-right';
  defaultModel: string;
  /** A sandbox kind the server offers; '' for the server's default. */
  defaultSandbox: string;
  defaultConfirmationMode: boolean;
}

export const DEFAULT_SETTINGS: IConvoSettings = {
  refreshInterval: 5,
  pageSize: 20,
  eventPageSize: 200,
  notifications: true,
  openMode: 'split-right',
  defaultModel: '',
  defaultSandbox: '',
  defaultConfirmationMode: false
};

/**
 * The side panel's shared state, provided by the core plugin: the models, the open views
 * and the helpers every command needs.
 */
export interface IConvoContext {
  readonly app: JupyterFrontEnd;
  /** Live settings (updated in place when the user changes them). */
  readonly settings: IConvoSettings;
  readonly registry: ConversationRegistry;
  readonly listModel: ConversationListModel;
  readonly tracker: WidgetTracker<ConversationView>;
  readonly panel: ConvoPanel;
  readonly fileBrowser: IDefaultFileBrowser | null;
  /** The view of a conversation, opened (and activated) if needed. */
  openConversation(id: string, activate?: boolean): ConversationView;
  findView(id: string): ConversationView | undefined;
  /**
   * Which conversation a command is about: its `id` argument, a list row under the
   * context menu, or the current view.
   */
  targetId(args: ReadonlyPartialJSONObject): string | null;
  /** The best title known for a conversation. */
  titleOf(id: string): string;
  /** Show a failed action: in the conversation's view when visible, else in a dialog. */
  report(what: string, id: string, error: unknown): void;
}

export const IConvoContext = new Token<IConvoContext>(
  'jupyter-convo:IConvoContext',
  'The side panel models, views and helpers shared by the plugins.'
);
