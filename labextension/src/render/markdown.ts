/**
 * Agent text as Markdown with raw HTML escaped (as the notebook widget's mistune renderer
 * does): the agent can format its answers but never inject markup.
 */
import { Marked } from 'marked';

import { escapeHTML } from './text';

const parser = new Marked({
  async: false,
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML blocks and inline tags are shown as the text they are.
    html({ text }) {
      return escapeHTML(text);
    }
  }
});

/**
 * Markdown to HTML with raw HTML escaped. `sanitize` then cleans what Markdown itself can
 * produce (e.g. `javascript:` links); pass JupyterLab's sanitizer.
 */
export function markdownToHTML(
  text: string,
  sanitize: (html: string) => string
): string {
  const html = parser.parse(text) as string;
  return sanitize(html);
}
