/**
 * Commands that find and open conversations: show the panel, new, search, refresh, open.
 */
import { CommandIDs, IConvoContext } from '../tokens';
import { afterPalette } from './util';

export function addNavigationCommands(ctx: IConvoContext): void {
  const { app, panel } = ctx;
  const { commands, shell } = app;
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
    isEnabled: args => ctx.targetId(args) !== null,
    execute: args => {
      const id = ctx.targetId(args);
      if (id) {
        ctx.openConversation(id, args.activate !== false);
      }
    }
  });
}
