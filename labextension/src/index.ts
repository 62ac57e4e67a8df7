import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-convo:plugin',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    console.log('jupyter-convo activated');
  }
};

export default plugin;
