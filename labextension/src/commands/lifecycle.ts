/**
 * Commands that change one conversation: stop, restart, rename, delete, and the answers to
 * an action waiting for confirmation.
 */
import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';

import { ConvoAPI } from '../api';
import { CommandIDs, IConvoContext } from '../tokens';
import { addTargetCommand } from './target';

export function addLifecycleCommands(ctx: IConvoContext): void {
  const { listModel, registry } = ctx;

  addTargetCommand(ctx, CommandIDs.stop, {
    label: 'Stop Conversation',
    caption: 'Stop the agent and its runtime',
    failure: 'Could not stop the conversation',
    run: async id => listModel.upsert(await ConvoAPI.stopConversation(id))
  });
  addTargetCommand(ctx, CommandIDs.restart, {
    label: 'Restart Conversation',
    caption: 'Start the runtime again; the agent continues from its history',
    failure: 'Could not restart the conversation',
    run: async id => {
      await ConvoAPI.startConversation(id);
      registry.watch(id, false);
      void listModel.refresh();
    }
  });
  addTargetCommand(ctx, CommandIDs.rename, {
    label: 'Rename Conversation…',
    failure: 'Could not rename the conversation',
    run: async id => {
      const answer = await InputDialog.getText({
        title: 'Rename conversation',
        label: 'Title',
        text: ctx.titleOf(id),
        okLabel: 'Rename'
      });
      const title = answer.value?.trim();
      if (!answer.button.accept || !title) {
        return;
      }
      listModel.upsert(await ConvoAPI.renameConversation(id, title));
      await registry.find(id)?.rename(title);
    }
  });
  addTargetCommand(ctx, CommandIDs.remove, {
    label: 'Delete Conversation…',
    failure: 'Could not delete the conversation',
    run: async id => {
      const answer = await showDialog({
        title: 'Delete conversation?',
        body: `"${ctx.titleOf(id)}" and its history will be deleted (its runtime is stopped). This cannot be undone.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
      });
      if (!answer.button.accept) {
        return;
      }
      await ConvoAPI.deleteConversation(id);
      listModel.remove(id);
      registry.unwatch(id);
      ctx.findView(id)?.dispose();
    }
  });
  for (const [command, confirmed] of [
    [CommandIDs.confirm, true],
    [CommandIDs.reject, false]
  ] as const) {
    addTargetCommand(ctx, command, {
      label: confirmed ? 'Confirm Waiting Action' : 'Reject Waiting Action',
      failure: `Could not ${confirmed ? 'confirm' : 'reject'} the action`,
      isEnabled: id => Boolean(registry.find(id)?.state.awaiting),
      run: async id => {
        const model = registry.find(id);
        if (model) {
          await model.answer(confirmed);
          registry.watch(id, false);
        }
      }
    });
  }
}
