/**
 * Rich outputs of the agent's Python (tables, plots). The host's renderers show a display
 * bundle when it has them (JupyterLab's rendermime in the panel); otherwise the built-in
 * path shows its richest safe form, in this order: image, SVG (as an image), HTML
 * (sanitized), Markdown, text.
 */
import { MimeBundle } from '../types';
import { IRenderContext } from './context';
import { h, markdown, pre } from './dom';

export const MIME_ORDER = [
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/svg+xml',
  'text/html',
  'text/markdown',
  'text/plain'
] as const;

export type RenderableMime = (typeof MIME_ORDER)[number];

/** The MIME type of `bundle` to show, or null when it has none we show. */
export function preferredMime(bundle: MimeBundle): RenderableMime | null {
  for (const mime of MIME_ORDER) {
    if (mime in bundle && bundle[mime] !== null && bundle[mime] !== undefined) {
      return mime;
    }
  }
  return null;
}

/** A bundle value as one string (nbformat allows a list of lines). */
export function mimeText(value: unknown): string {
  if (Array.isArray(value)) {
    return value.join('');
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Base64 of a UTF-8 string (for SVG data URLs). */
export function base64Utf8(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary);
}

/** The `src` of an image MIME value: base64 data URL; SVG text is encoded first. */
export function imageSource(mime: string, value: unknown): string {
  if (mime === 'image/svg+xml') {
    return `data:image/svg+xml;base64,${base64Utf8(mimeText(value))}`;
  }
  const data = mimeText(value).replace(/\n/g, '');
  return `data:${mime};base64,${data}`;
}

/** The built-in rendering of a display bundle; null when nothing in it can be shown. */
export function builtinMimeBlock(
  bundle: MimeBundle,
  ctx: IRenderContext
): HTMLElement | null {
  const mime = preferredMime(bundle);
  if (mime === null) {
    return null;
  }
  const value = bundle[mime];
  if (mime.startsWith('image/')) {
    const img = h('img', 'jp-convo-image') as HTMLImageElement;
    img.alt = mime === 'image/svg+xml' ? 'figure' : 'plot';
    img.src = imageSource(mime, value);
    return img;
  }
  if (mime === 'text/html') {
    const node = h('div', 'jp-convo-rich jp-RenderedHTMLCommon');
    node.innerHTML = ctx.sanitize(mimeText(value));
    return node;
  }
  if (mime === 'text/markdown') {
    return markdown(mimeText(value), ctx);
  }
  return pre(mimeText(value));
}

/** A display bundle through the host's renderers, else the built-in path. */
export function mimeBlock(
  bundle: MimeBundle,
  ctx: IRenderContext
): HTMLElement | null {
  return ctx.renderMime?.(bundle) ?? builtinMimeBlock(bundle, ctx);
}
