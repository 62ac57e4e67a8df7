/**
 * What the renderer needs from its host. The side panel passes JupyterLab's sanitizer and
 * rendermime registry (render/lab.ts); the notebook widget and a standalone page pass a
 * DOMPurify sanitizer and no rendermime (render/standalone.ts), so MIME bundles take the
 * built-in path (render/mime.ts).
 */
import { MimeBundle } from '../types';

export interface IRenderContext {
  /** HTML made safe to put in the page (scripts, handlers and bad URLs removed). */
  sanitize(html: string): string;
  /**
   * A display bundle rendered by the host's own renderers (JupyterLab's rendermime), or
   * null when the host has none for it: the built-in renderer then shows it.
   */
  renderMime?(bundle: MimeBundle): HTMLElement | null;
}
