/**
 * The notebook widget's front end: an anywidget ES module (built by `jlpm build:widget`
 * into jupyter_convo/kernel/static/widget.js, with widget.css beside it). The rows are
 * drawn by the side panel's renderer (render/), with the built-in MIME path and DOMPurify
 * since a widget has no rendermime.
 */
import '../../style/conversation.css';
import '../../style/widget.css';

import { standaloneRenderContext } from '../render/standalone';
import { IWidgetModel } from './protocol';
import { EventStore } from './store';
import { NotebookView } from './view';

/** One store of received events per model, shared by the model's views. */
const stores = new WeakMap<IWidgetModel, EventStore>();

function storeOf(model: IWidgetModel): EventStore {
  let store = stores.get(model);
  if (!store) {
    store = new EventStore(model);
    stores.set(model, store);
  }
  return store;
}

function initialize({ model }: { model: IWidgetModel }): () => void {
  const store = storeOf(model);
  return () => {
    store.dispose();
    stores.delete(model);
  };
}

function render({
  model,
  el
}: {
  model: IWidgetModel;
  el: HTMLElement;
}): () => void {
  const view = new NotebookView(
    model,
    storeOf(model),
    standaloneRenderContext()
  );
  el.appendChild(view.node);
  return () => view.dispose();
}

export default { initialize, render };
