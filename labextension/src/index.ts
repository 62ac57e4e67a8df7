/**
 * jupyter-convo's JupyterLab side panel: find, start, watch and drive AI agent
 * conversations without writing code.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  ISanitizer,
  InputDialog,
  Notification,
  Sanitizer,
  WidgetTracker,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { PageConfig, PathExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { ConvoAPI } from './api';
import { APIError } from './handler';
import { ConversationListModel } from './models/list';
import { NoticeKind } from './models/notify';
import { ConversationRegistry } from './models/registry';
import { patchConversation } from './models/state';
import { ICreateConversation } from './types';
import { IFormDefaults } from './widgets/form';
import { ConvoPanel } from './widgets/panel';
import { ConversationView, ViewCommands } from './widgets/view';

const PLUGIN_ID = 'jupyter-convo:plugin';
const WATCHED_KEY = 'jupyter-convo:watched';

export const CommandIDs = {
  showPanel: 'convo:show-panel',
  create: 'convo:new',
  open: 'convo:open',
  search: 'convo:search',
  refresh: 'convo:refresh',
  ...ViewCommands
} as const;

/** The extension's settings (schema/plugin.json). */
interface IConvoSettings {
  refreshInterval: number;
  pageSize: number;
  eventPageSize: number;
  notifications: boolean;
  openMode: 'tab' | 'split-right';
  defaultModel: string;
  defaultSandbox: 'process' | 'docker';
  defaultConfirmationMode: boolean;
}

const DEFAULT_SETTINGS: IConvoSettings = {
  refreshInterval: 5,
  pageSize: 20,
  eventPageSize: 200,
  notifications: true,
  openMode: 'split-right',
  defaultModel: '',
  defaultSandbox: 'process',
  defaultConfirmationMode: false
};

const NOTICE_TYPES: Record<NoticeKind, Notification.TypeOptions> = {
  finished: 'success',
  replied: 'info',
  failed: 'error',
  confirm: 'warning'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Side panel to find, start, watch and drive AI agent conversations (jupyter-convo).',
  autoStart: true,
  optional: [
    ICommandPalette,
    ILayoutRestorer,
    ISettingRegistry,
    IStateDB,
    IDefaultFileBrowser,
    ISanitizer
  ],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    state: IStateDB | null,
    fileBrowser: IDefaultFileBrowser | null,
    sanitizer: ISanitizer | null
  ) => {
    const { commands, shell } = app;
    const settings: IConvoSettings = { ...DEFAULT_SETTINGS };
    const htmlSanitizer = sanitizer ?? new Sanitizer();
    // Read by each model the registry makes, so a settings change applies to views
    // opened afterwards.
    const modelOptions = { pageSize: settings.eventPageSize };
    const registry = new ConversationRegistry(modelOptions);
    const listModel = new ConversationListModel({
      pageSize: settings.pageSize
    });
    const tracker = new WidgetTracker<ConversationView>({
      namespace: 'jupyter-convo'
    });

    const formDefaults = (): IFormDefaults => ({
      model: settings.defaultModel,
      sandbox: settings.defaultSandbox,
      confirmationMode: settings.defaultConfirmationMode
    });

    const findView = (id: string) => tracker.find(view => view.model.id === id);

    const openConversation = (
      id: string,
      activate = true
    ): ConversationView => {
      let view = findView(id);
      if (!view) {
        const model = registry.acquire(id);
        const created = new ConversationView({
          model,
          commands,
          sanitizer: htmlSanitizer,
          onSend: sentId => registry.watch(sentId, false)
        });
        view = created;
        created.disposed.connect(() => registry.release(id));
        const sibling = tracker.currentWidget ?? tracker.find(() => true);
        const options: DocumentRegistryAddOptions = sibling
          ? { ref: sibling.id, mode: 'tab-after' }
          : {
              mode:
                settings.openMode === 'split-right'
                  ? 'split-right'
                  : 'tab-after'
            };
        shell.add(created, 'main', options);
        void tracker.add(created);
        model.load().catch(error => {
          created.showNotice(
            `Could not load the conversation: ${error.message ?? error}`,
            true
          );
        });
      }
      if (activate) {
        shell.activateById(view.id);
      }
      return view;
    };

    const panel = new ConvoPanel({
      model: listModel,
      defaults: formDefaults,
      refreshInterval: settings.refreshInterval,
      onOpen: id => openConversation(id),
      onCreate: async (body: ICreateConversation) => {
        const task = await ConvoAPI.createConversation(body);
        const id = task.conversation_id;
        if (!id) {
          throw new Error('the server did not name the new conversation');
        }
        registry.watch(id, true);
        const view = openConversation(id);
        view.model.followStartTask(task);
        void listModel.refresh();
      },
      onImport: async (file: File) => {
        try {
          const meta = await ConvoAPI.importConversation(file);
          listModel.upsert(meta);
          openConversation(meta.id);
          void listModel.refresh();
        } catch (error) {
          void showErrorMessage(
            'Could not import the conversation',
            (error as Error).message ?? String(error)
          );
        }
      },
      currentFolder: () => fileBrowser?.model.path ?? ''
    });
    shell.add(panel, 'left', { rank: 850 });

    // Live rows: a watched or open conversation updates its list row.
    registry.stateChanged.connect((_, { next }) => {
      const item = listModel.find(next.id);
      if (next.deleted) {
        listModel.remove(next.id);
      } else if (item) {
        listModel.upsert(patchConversation(item, next));
      }
    });

    // Notices for conversations started here, unless their view is on screen.
    registry.noticeRaised.connect((_, { id, notice }) => {
      const view = findView(id);
      if (!settings.notifications || (view && view.isVisible)) {
        return;
      }
      const sticky = notice.kind === 'failed' || notice.kind === 'confirm';
      Notification.emit(notice.message, NOTICE_TYPES[notice.kind], {
        autoClose: sticky ? false : 10000,
        actions: [
          {
            label: 'Open',
            caption: 'Open the conversation',
            callback: () => void commands.execute(CommandIDs.open, { id })
          }
        ]
      });
    });

    // Which conversation a command is about: its argument, a list row under the
    // context menu, or the current view.
    const targetId = (args: ReadonlyPartialJSONObject): string | null => {
      if (typeof args.id === 'string' && args.id) {
        return args.id;
      }
      const row = app.contextMenuHitTest(node =>
        node.classList.contains('jp-convo-list-item')
      );
      if (row?.dataset.id) {
        return row.dataset.id;
      }
      return tracker.currentWidget?.model.id ?? null;
    };
    const hasTarget = (args: ReadonlyPartialJSONObject) =>
      targetId(args) !== null;
    const titleOf = (id: string) =>
      registry.find(id)?.state.title ??
      listModel.find(id)?.title ??
      `Conversation ${id.slice(0, 8)}`;

    const report = (what: string, id: string, error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      const view = findView(id);
      if (view && view.isVisible) {
        view.showNotice(`${what}: ${message}`, true);
      } else {
        void showErrorMessage(what, message);
      }
    };

    commands.addCommand(CommandIDs.showPanel, {
      label: 'Show Conversations Panel',
      caption: 'Find, start, watch and drive agent conversations',
      execute: () => shell.activateById(panel.id)
    });
    commands.addCommand(CommandIDs.create, {
      label: 'New Conversation…',
      caption: 'Start an agent conversation',
      execute: () => {
        shell.activateById(panel.id);
        panel.showForm();
        afterPalette(() => panel.form.focusTask());
      }
    });
    commands.addCommand(CommandIDs.search, {
      label: 'Search Conversations',
      execute: args => {
        shell.activateById(panel.id);
        const query = typeof args.query === 'string' ? args.query : undefined;
        panel.focusSearch(query);
        afterPalette(() => panel.focusSearch());
      }
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Conversations',
      execute: () => panel.refresh()
    });
    commands.addCommand(CommandIDs.open, {
      label: args =>
        args.id
          ? 'Open Conversation'
          : 'Open Conversation (pick one in the panel)',
      isEnabled: hasTarget,
      execute: args => {
        const id = targetId(args);
        if (id) {
          openConversation(id, args.activate !== false);
        }
      }
    });
    commands.addCommand(CommandIDs.stop, {
      label: 'Stop Conversation',
      caption: 'Stop the agent and its runtime',
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        try {
          const meta = await ConvoAPI.stopConversation(id);
          listModel.upsert(meta);
        } catch (error) {
          report('Could not stop the conversation', id, error);
        }
      }
    });
    commands.addCommand(CommandIDs.restart, {
      label: 'Restart Conversation',
      caption: 'Start the runtime again; the agent continues from its history',
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        try {
          await ConvoAPI.startConversation(id);
          registry.watch(id, false);
          void listModel.refresh();
        } catch (error) {
          report('Could not restart the conversation', id, error);
        }
      }
    });
    commands.addCommand(CommandIDs.rename, {
      label: 'Rename Conversation…',
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        const answer = await InputDialog.getText({
          title: 'Rename conversation',
          label: 'Title',
          text: titleOf(id),
          okLabel: 'Rename'
        });
        const title = answer.value?.trim();
        if (!answer.button.accept || !title) {
          return;
        }
        try {
          const meta = await ConvoAPI.renameConversation(id, title);
          listModel.upsert(meta);
          const model = registry.find(id);
          if (model) {
            await model.rename(title);
          }
        } catch (error) {
          report('Could not rename the conversation', id, error);
        }
      }
    });
    commands.addCommand(CommandIDs.remove, {
      label: 'Delete Conversation…',
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        const answer = await showDialog({
          title: 'Delete conversation?',
          body: `"${titleOf(id)}" and its history will be deleted (its runtime is stopped). This cannot be undone.`,
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Delete' })
          ]
        });
        if (!answer.button.accept) {
          return;
        }
        try {
          await ConvoAPI.deleteConversation(id);
        } catch (error) {
          report('Could not delete the conversation', id, error);
          return;
        }
        listModel.remove(id);
        registry.unwatch(id);
        findView(id)?.dispose();
      }
    });
    commands.addCommand(CommandIDs.exportZip, {
      label: 'Export Conversation',
      caption: 'Download the conversation (events, metadata) as a zip',
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        try {
          const blob = await ConvoAPI.exportConversation(id);
          download(blob, `${slug(titleOf(id))}.convo.zip`);
        } catch (error) {
          report(
            'Could not export the conversation',
            id,
            unavailable(error, 'Export')
          );
        }
      }
    });
    commands.addCommand(CommandIDs.openWorkspace, {
      label: 'Open Conversation Workspace',
      caption: "Show the conversation's workspace in the file browser",
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        try {
          const meta = await ConvoAPI.getConversation(id);
          const path = rootRelative(meta.workspace);
          if (path === null) {
            await showDialog({
              title: 'Workspace outside the file browser',
              body: meta.workspace
                ? `The workspace ${meta.workspace} is outside the Jupyter root, so the file browser cannot show it.`
                : 'This conversation works in its own private folder (outside the Jupyter root). Choose a workspace folder when you start a conversation to see its files here.',
              buttons: [Dialog.okButton()]
            });
            return;
          }
          await commands.execute('filebrowser:go-to-path', {
            path: path || '/'
          });
          await commands.execute('filebrowser:activate');
        } catch (error) {
          report('Could not open the workspace', id, error);
        }
      }
    });
    commands.addCommand(CommandIDs.replay, {
      label: args =>
        args.mode === 'cassette'
          ? 'Replay Conversation (Recorded LLM Answers)'
          : 'Replay Conversation',
      caption:
        'Re-run every recorded step in a fresh runtime and mark each one reproduced or diverged',
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        const mode = args.mode === 'cassette' ? 'cassette' : 'actions';
        try {
          const task = await ConvoAPI.createConversation({
            title: `Replay of ${titleOf(id)}`,
            replay: { source_conversation_id: id, mode }
          });
          const replayId = task.conversation_id;
          if (!replayId) {
            throw new Error('the server did not name the replay');
          }
          registry.watch(replayId, true);
          openConversation(replayId).model.followStartTask(task);
          void listModel.refresh();
        } catch (error) {
          report('Could not replay the conversation', id, error);
        }
      }
    });
    commands.addCommand(CommandIDs.openNotebook, {
      label: 'Open Conversation as Notebook',
      caption:
        'Save the conversation as a notebook next to your files and open it',
      isEnabled: hasTarget,
      execute: async args => {
        const id = targetId(args);
        if (!id) {
          return;
        }
        try {
          const content = await ConvoAPI.conversationNotebook(id);
          const folder = fileBrowser?.model.path ?? '';
          const path = PathExt.join(
            folder,
            `${slug(titleOf(id))}-${id.slice(0, 8)}.ipynb`
          );
          await app.serviceManager.contents.save(path, {
            type: 'notebook',
            format: 'json',
            content
          });
          await commands.execute('docmanager:open', { path });
        } catch (error) {
          report(
            'Could not open the conversation as a notebook',
            id,
            unavailable(error, 'Open as notebook')
          );
        }
      }
    });
    for (const [command, confirmed] of [
      [CommandIDs.confirm, true],
      [CommandIDs.reject, false]
    ] as const) {
      commands.addCommand(command, {
        label: confirmed ? 'Confirm Waiting Action' : 'Reject Waiting Action',
        isEnabled: args => {
          const id = targetId(args);
          return id !== null && Boolean(registry.find(id)?.state.awaiting);
        },
        execute: async args => {
          const id = targetId(args);
          const model = id ? registry.find(id) : undefined;
          if (!id || !model) {
            return;
          }
          try {
            await model.answer(confirmed);
            registry.watch(id, false);
          } catch (error) {
            report(
              `Could not ${confirmed ? 'confirm' : 'reject'} the action`,
              id,
              error
            );
          }
        }
      });
    }

    if (palette) {
      const category = 'Conversations';
      for (const command of [
        CommandIDs.showPanel,
        CommandIDs.create,
        CommandIDs.search,
        CommandIDs.refresh,
        CommandIDs.stop,
        CommandIDs.restart,
        CommandIDs.rename,
        CommandIDs.remove,
        CommandIDs.exportZip,
        CommandIDs.openWorkspace,
        CommandIDs.openNotebook,
        CommandIDs.replay,
        CommandIDs.confirm,
        CommandIDs.reject
      ]) {
        palette.addItem({ command, category });
      }
    }
    let rank = 0;
    for (const command of [
      CommandIDs.open,
      CommandIDs.rename,
      CommandIDs.stop,
      CommandIDs.restart,
      CommandIDs.exportZip,
      CommandIDs.remove
    ]) {
      app.contextMenu.addItem({
        command,
        selector: '.jp-convo-list-item',
        rank: rank++
      });
    }

    if (restorer) {
      restorer.add(panel, 'jupyter-convo-panel');
      void restorer.restore(tracker, {
        command: CommandIDs.open,
        args: view => ({ id: view.model.id, activate: false }),
        name: view => view.model.id
      });
    }

    if (state) {
      void app.restored
        .then(() => state.fetch(WATCHED_KEY))
        .then(saved => {
          if (Array.isArray(saved)) {
            for (const id of saved) {
              if (typeof id === 'string') {
                registry.watch(id, false);
              }
            }
          }
          registry.watchedChanged.connect(
            (_, ids) => void state.save(WATCHED_KEY, ids)
          );
        })
        .catch(error =>
          console.warn(
            'jupyter-convo: cannot restore watched conversations',
            error
          )
        );
    }

    if (settingRegistry) {
      const apply = (loaded: ISettingRegistry.ISettings) => {
        Object.assign(
          settings,
          loaded.composite as unknown as Partial<IConvoSettings>
        );
        panel.refreshInterval = settings.refreshInterval;
        listModel.pageSize = settings.pageSize;
        modelOptions.pageSize = settings.eventPageSize;
      };
      void Promise.all([settingRegistry.load(PLUGIN_ID), app.restored])
        .then(([loaded]) => {
          apply(loaded);
          loaded.changed.connect(apply);
        })
        .catch(error =>
          console.warn('jupyter-convo: cannot load settings', error)
        );
    }

    // Show the user's default model as the form's hint (best effort).
    void ConvoAPI.getSettings()
      .then(user => panel.form.setModelHint(user.llm_model))
      .catch(() => undefined);
  }
};

type DocumentRegistryAddOptions = {
  ref?: string;
  mode?: 'tab-after' | 'split-right';
};

/**
 * Run `focus` once the command palette that ran a command has closed: it gives the focus
 * back to where it was right after the command starts.
 */
function afterPalette(focus: () => void): void {
  window.setTimeout(focus, 0);
}

/** A path relative to the Jupyter root, or null when `absolute` is outside it. */
export function rootRelative(absolute: string | null): string | null {
  if (!absolute) {
    return null;
  }
  const root = PageConfig.getOption('serverRoot').replace(/\/+$/, '');
  const path = absolute.replace(/\/+$/, '');
  if (!root) {
    return null;
  }
  if (path === root) {
    return '';
  }
  return path.startsWith(root + '/') ? path.slice(root.length + 1) : null;
}

/** A file-name-safe form of a title. */
function slug(title: string): string {
  const cleaned = title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return cleaned || 'conversation';
}

function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A clearer error when the server has no such route (a feature it does not have). */
function unavailable(error: unknown, feature: string): unknown {
  if (error instanceof APIError && error.missing) {
    return new Error(
      `${feature} is not available on this server (its jupyter-convo has no such route yet).`
    );
  }
  return error;
}

export default plugin;
