/**
 * The core plugin: the conversation list, the shared live models, the side panel and the
 * conversation views. It provides `IConvoContext` to the command and notification plugins.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ISanitizer,
  Sanitizer,
  WidgetTracker,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { ConvoAPI } from '../api';
import { ConversationListModel } from '../models/list';
import { ConversationRegistry } from '../models/registry';
import { patchConversation } from '../models/state';
import { labRenderContext } from '../render/lab';
import {
  DEFAULT_SETTINGS,
  IConvoContext,
  IConvoSettings,
  PLUGIN_ID
} from '../tokens';
import { ICreateConversation } from '../types';
import { IFormDefaults } from '../widgets/form';
import { ConvoPanel } from '../widgets/panel';
import { ConversationView } from '../widgets/view';

const WATCHED_KEY = 'jupyter-convo:watched';

type AddOptions = { ref?: string; mode?: 'tab-after' | 'split-right' };

export const corePlugin: JupyterFrontEndPlugin<IConvoContext> = {
  id: PLUGIN_ID,
  description:
    'Side panel to find, start, watch and drive AI agent conversations (jupyter-convo).',
  autoStart: true,
  provides: IConvoContext,
  optional: [
    ILayoutRestorer,
    ISettingRegistry,
    IStateDB,
    IDefaultFileBrowser,
    ISanitizer,
    IRenderMimeRegistry
  ],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    state: IStateDB | null,
    fileBrowser: IDefaultFileBrowser | null,
    sanitizer: ISanitizer | null,
    rendermime: IRenderMimeRegistry | null
  ): IConvoContext => {
    const { commands, shell } = app;
    const settings: IConvoSettings = { ...DEFAULT_SETTINGS };
    const renderContext = labRenderContext(
      sanitizer ?? new Sanitizer(),
      rendermime
    );
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
          renderContext,
          onSend: sentId => registry.watch(sentId, false)
        });
        view = created;
        created.disposed.connect(() => registry.release(id));
        const sibling = tracker.currentWidget ?? tracker.find(() => true);
        const options: AddOptions = sibling
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

    const formDefaults = (): IFormDefaults => ({
      model: settings.defaultModel,
      sandbox: settings.defaultSandbox,
      confirmationMode: settings.defaultConfirmationMode
    });

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
    // The list's selection follows the conversation view in front.
    tracker.currentChanged.connect((_, view) =>
      panel.list.select(view?.model.id ?? null)
    );
    restorer?.add(panel, 'jupyter-convo-panel');

    // Live rows: a watched or open conversation updates its list row.
    registry.stateChanged.connect((_, { next }) => {
      const item = listModel.find(next.id);
      if (next.deleted) {
        listModel.remove(next.id);
      } else if (item) {
        listModel.upsert(patchConversation(item, next));
      }
    });

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

    const context: IConvoContext = {
      app,
      settings,
      registry,
      listModel,
      tracker,
      panel,
      fileBrowser,
      openConversation,
      findView,
      targetId,
      titleOf: id =>
        registry.find(id)?.state.title ??
        listModel.find(id)?.title ??
        `Conversation ${id.slice(0, 8)}`,
      report: (what, id, error) => {
        const message = error instanceof Error ? error.message : String(error);
        const view = findView(id);
        if (view && view.isVisible) {
          view.showNotice(`${what}: ${message}`, true);
        } else {
          void showErrorMessage(what, message);
        }
      }
    };

    if (state) {
      restoreWatched(app, state, registry);
    }
    if (settingRegistry) {
      void Promise.all([settingRegistry.load(PLUGIN_ID), app.restored])
        .then(([loaded]) => {
          const apply = (changed: ISettingRegistry.ISettings) => {
            Object.assign(
              settings,
              changed.composite as unknown as Partial<IConvoSettings>
            );
            panel.refreshInterval = settings.refreshInterval;
            listModel.pageSize = settings.pageSize;
            modelOptions.pageSize = settings.eventPageSize;
          };
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
    // The sandbox kinds the server offers fill the form's choice.
    void ConvoAPI.getCapabilities()
      .then(offered =>
        panel.form.setSandboxes(offered.sandboxes, offered.default_sandbox)
      )
      .catch(error =>
        console.warn('jupyter-convo: cannot load the capabilities', error)
      );
    return context;
  }
};

/** Watch again the conversations watched before the page reloaded; save changes. */
function restoreWatched(
  app: JupyterFrontEnd,
  state: IStateDB,
  registry: ConversationRegistry
): void {
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
      console.warn('jupyter-convo: cannot restore watched conversations', error)
    );
}
