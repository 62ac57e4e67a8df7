/**
 * The notifications plugin: JupyterLab notifications when a conversation started here
 * finishes, replies, fails or waits for a confirmation, unless its view is on screen.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';

import { NoticeKind } from '../models/notify';
import { CommandIDs, IConvoContext } from '../tokens';

const NOTICE_TYPES: Record<NoticeKind, Notification.TypeOptions> = {
  finished: 'success',
  replied: 'info',
  failed: 'error',
  confirm: 'warning'
};

export const notificationsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-convo:notifications',
  description: 'Notifications about conversations started from the panel.',
  autoStart: true,
  requires: [IConvoContext],
  activate: (app: JupyterFrontEnd, ctx: IConvoContext) => {
    ctx.registry.noticeRaised.connect((_, { id, notice }) => {
      const view = ctx.findView(id);
      if (!ctx.settings.notifications || (view && view.isVisible)) {
        return;
      }
      const sticky = notice.kind === 'failed' || notice.kind === 'confirm';
      Notification.emit(notice.message, NOTICE_TYPES[notice.kind], {
        autoClose: sticky ? false : 10000,
        actions: [
          {
            label: 'Open',
            caption: 'Open the conversation',
            callback: () => void app.commands.execute(CommandIDs.open, { id })
          }
        ]
      });
    });
  }
};
