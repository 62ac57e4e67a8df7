/**
 * The render context outside JupyterLab's own widgets (the notebook widget, a standalone
 * HTML page): DOMPurify as the sanitizer and no rendermime, so display bundles take the
 * built-in path (images, sanitized HTML, Markdown, text).
 */
import DOMPurify from 'dompurify';

import { IRenderContext } from './context';

/** Tags never kept: page-wide styles and forms have no place in an output. */
const FORBID_TAGS = ['style', 'form'];

export function standaloneRenderContext(): IRenderContext {
  return {
    sanitize: html =>
      DOMPurify.sanitize(html, { FORBID_TAGS }) as unknown as string
  };
}
