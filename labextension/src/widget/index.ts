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
import { NotebookView } from './view';

function render({
  model,
  el
}: {
  model: IWidgetModel;
  el: HTMLElement;
}): () => void {
  const view = new NotebookView(model, standaloneRenderContext());
  el.appendChild(view.node);
  return () => view.dispose();
}

export default { render };
