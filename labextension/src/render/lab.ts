/**
 * The render context of the side panel: JupyterLab's sanitizer, and its rendermime
 * registry for the agent's display bundles (the same renderers as notebook outputs, with
 * the bundle untrusted: HTML sanitized, no scripts).
 */
import { ISanitizer } from '@jupyterlab/apputils';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { MimeBundle } from '../types';
import { IRenderContext } from './context';
import { h } from './dom';

export function labRenderContext(
  sanitizer: ISanitizer,
  rendermime: IRenderMimeRegistry | null
): IRenderContext {
  const context: IRenderContext = {
    sanitize: html => sanitizer.sanitize(html)
  };
  if (rendermime) {
    context.renderMime = (bundle: MimeBundle) =>
      renderWithRendermime(rendermime, bundle);
  }
  return context;
}

function renderWithRendermime(
  rendermime: IRenderMimeRegistry,
  bundle: MimeBundle
): HTMLElement | null {
  const data = bundle as ReadonlyPartialJSONObject;
  const mime = rendermime.preferredMimeType(data, 'ensure');
  if (!mime) {
    return null;
  }
  const renderer = rendermime.createRenderer(mime);
  const node = h('div', 'jp-convo-rich jp-convo-mime');
  node.dataset.mimeType = mime;
  node.appendChild(renderer.node);
  renderer.renderModel(new MimeModel({ data, trusted: false })).catch(error => {
    node.replaceChildren(
      h('pre', '', `Could not show this ${mime} output: ${error}`)
    );
  });
  return node;
}
