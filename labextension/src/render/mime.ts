/**
 * Rich outputs of the agent's Python (tables, plots): the richest safe form of a display
 * bundle, in the notebook widget's order: image, SVG (as an image), HTML, Markdown, text.
 */
import { MimeBundle } from '../types';

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
