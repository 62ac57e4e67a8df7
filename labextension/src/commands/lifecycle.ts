/**
 * Commands that change one conversation: stop, restart, rename, delete, and the answers to
 * an action waiting for confirmation.
 */
import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { ConvoAPI } from '../api';
import { CommandIDs, IConvoContext } from '../tokens';

/** A command body run for the targeted conversation (nothing when there is none). */
export function forTarget(
  ctx: IConvoContext,
  run: (id: string, args: ReadonlyPartialJSONObject) => Promise<void> | void
): (args: ReadonlyPartialJSONObject) => Promise<void> {
  return async args => {
    const id = ctx.targetId(args);
    if (id) {
      await run(id, args);
    }
  };
}

export function addLifecycleCommands(ctx: IConvoContext): void {
  const { commands } = ctx.app;
  const { listModel, registry } = ctx;
  const hasTarget = (args: ReadonlyPartialJSONObject) =>
    ctx.targetId(args) !== null;

  commands.addCommand(CommandIDs.stop, {
    label: 'Stop Conversation',
    caption: 'Stop the agent and its runtime',
    isEnabled: hasTarget,
    execute: forTarget(ctx, async id => {
      try {
        listModel.upsert(await ConvoAPI.stopConversation(id));
      } catch (error) {
        ctx.report('Could not stop the conversation', id, error);
      }
    })
  });
  commands.addCommand(CommandIDs.restart, {
    label: 'Restart Conversation',
    caption: 'Start the runtime again; the agent continues from its history',
    isEnabled: hasTarget,
    execute: forTarget(ctx, async id => {
      try {
        await ConvoAPI.startConversation(id);
        registry.watch(id, false);
        void listModel.refresh();
      } catch (error) {
        ctx.report('Could not restart the conversation', id, error);
      }
    })
  });
  commands.addCommand(CommandIDs.rename, {
    label: 'Rename Conversation…',
    isEnabled: hasTarget,
    execute: forTarget(ctx, async id => {
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
      try {
        listModel.upsert(await ConvoAPI.renameConversation(id, title));
        await registry.find(id)?.rename(title);
      } catch (error) {
        ctx.report('Could not rename the conversation', id, error);
      }
    })
  });
  commands.addCommand(CommandIDs.remove, {
    label: 'Delete Conversation…',
    isEnabled: hasTarget,
    execute: forTarget(ctx, async id => {
      const answer = await showDialog({
        title: 'Delete conversation?',
        body: `"${ctx.titleOf(id)}" and its history will be deleted (its runtime is stopped). This cannot be undone.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
      });
      if (!answer.button.accept) {
        return;
      }
      try {
        await ConvoAPI.deleteConversation(id);
      } catch (error) {
        ctx.report('Could not delete the conversation', id, error);
        return;
      }
      listModel.remove(id);
      registry.unwatch(id);
      ctx.findView(id)?.dispose();
    })
  });
  for (const [command, confirmed] of [
    [CommandIDs.confirm, true],
    [CommandIDs.reject, false]
  ] as const) {
    commands.addCommand(command, {
      label: confirmed ? 'Confirm Waiting Action' : 'Reject Waiting Action',
      isEnabled: args => {
        const id = ctx.targetId(args);
        return id !== null && Boolean(registry.find(id)?.state.awaiting);
      },
      execute: forTarget(ctx, async id => {
        const model = registry.find(id);
        if (!model) {
          return;
        }
        try {
          await model.answer(confirmed);
          registry.watch(id, false);
        } catch (error) {
          ctx.report(
            `Could not ${confirmed ? 'confirm' : 'reject'} the action`,
            id,
            error
          );
        }
      })
    });
  }
}
