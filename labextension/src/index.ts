/**
 * jupyter-convo's JupyterLab side panel: find, start, watch and drive AI agent
 * conversations without writing code. Each feature is a plugin of its own.
 */
import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { commandsPlugin } from './plugins/commands';
import { corePlugin } from './plugins/core';
import { notificationsPlugin } from './plugins/notifications';

export { CommandIDs, IConvoContext } from './tokens';
export { rootRelative } from './commands/util';

const plugins: JupyterFrontEndPlugin<any>[] = [
  corePlugin,
  commandsPlugin,
  notificationsPlugin
];

export default plugins;
