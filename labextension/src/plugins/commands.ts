/**
 * The commands plugin: every conversation command, in the palette and the list's context
 * menu, and the conversation views restored after a reload (they reopen through a command).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { addLifecycleCommands } from '../commands/lifecycle';
import { addNavigationCommands } from '../commands/navigation';
import { addShareCommands } from '../commands/share';
import { CommandIDs, IConvoContext } from '../tokens';

const PALETTE_COMMANDS = [
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
];

const CONTEXT_MENU_COMMANDS = [
  CommandIDs.open,
  CommandIDs.rename,
  CommandIDs.stop,
  CommandIDs.restart,
  CommandIDs.exportZip,
  CommandIDs.remove
];

export const commandsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-convo:commands',
  description:
    'Commands to open, stop, restart, rename, export and replay conversations.',
  autoStart: true,
  requires: [IConvoContext],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    ctx: IConvoContext,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    addNavigationCommands(ctx);
    addLifecycleCommands(ctx);
    addShareCommands(ctx);

    if (palette) {
      for (const command of PALETTE_COMMANDS) {
        palette.addItem({ command, category: 'Conversations' });
      }
    }
    CONTEXT_MENU_COMMANDS.forEach((command, rank) =>
      app.contextMenu.addItem({
        command,
        selector: '.jp-convo-list-item',
        rank
      })
    );
    if (restorer) {
      void restorer.restore(ctx.tracker, {
        command: CommandIDs.open,
        args: view => ({ id: view.model.id, activate: false }),
        name: view => view.model.id
      });
    }
  }
};
