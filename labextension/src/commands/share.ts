/**
 * Commands that take a conversation elsewhere: export as zip, open its workspace in the
 * file browser, replay it, open it as a notebook.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';

import { ConvoAPI } from '../api';
import { CommandIDs, IConvoContext } from '../tokens';
import { addTargetCommand } from './target';
import { download, rootRelative, slug, unavailable } from './util';

export function addShareCommands(ctx: IConvoContext): void {
  const { app, listModel, registry } = ctx;
  const { commands } = app;

  addTargetCommand(ctx, CommandIDs.exportZip, {
    label: 'Export Conversation',
    caption: 'Download the conversation (events, metadata) as a zip',
    failure: 'Could not export the conversation',
    explain: error => unavailable(error, 'Export'),
    run: async id => {
      const blob = await ConvoAPI.exportConversation(id);
      download(blob, `${slug(ctx.titleOf(id))}.convo.zip`);
    }
  });
  addTargetCommand(ctx, CommandIDs.openWorkspace, {
    label: 'Open Conversation Workspace',
    caption: "Show the conversation's workspace in the file browser",
    failure: 'Could not open the workspace',
    run: async id => {
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
      await commands.execute('filebrowser:go-to-path', { path: path || '/' });
      await commands.execute('filebrowser:activate');
    }
  });
  addTargetCommand(ctx, CommandIDs.replay, {
    label: args =>
      args.mode === 'cassette'
        ? 'Replay Conversation (Recorded LLM Answers)'
        : 'Replay Conversation',
    caption:
      'Re-run every recorded step in a fresh runtime and mark each one reproduced or diverged',
    failure: 'Could not replay the conversation',
    run: async (id, args) => {
      const task = await ConvoAPI.createConversation({
        title: `Replay of ${ctx.titleOf(id)}`,
        replay: {
          source_conversation_id: id,
          mode: args.mode === 'cassette' ? 'cassette' : 'actions'
        }
      });
      const replayId = task.conversation_id;
      if (!replayId) {
        throw new Error('the server did not name the replay');
      }
      registry.watch(replayId, true);
      ctx.openConversation(replayId).model.followStartTask(task);
      void listModel.refresh();
    }
  });
  addTargetCommand(ctx, CommandIDs.openNotebook, {
    label: 'Open Conversation as Notebook',
    caption:
      'Save the conversation as a notebook next to your files and open it',
    failure: 'Could not open the conversation as a notebook',
    explain: error => unavailable(error, 'Open as notebook'),
    run: async id => {
      const content = await ConvoAPI.conversationNotebook(id);
      const folder = ctx.fileBrowser?.model.path ?? '';
      const path = PathExt.join(
        folder,
        `${slug(ctx.titleOf(id))}-${id.slice(0, 8)}.ipynb`
      );
      await app.serviceManager.contents.save(path, {
        type: 'notebook',
        format: 'json',
        content
      });
      await commands.execute('docmanager:open', { path });
    }
  });
}
