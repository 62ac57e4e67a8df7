/**
 * Small helpers of the commands: file names, downloads, paths in the Jupyter root.
 */
import { PageConfig } from '@jupyterlab/coreutils';

import { APIError } from '../handler';

/**
 * Run `focus` once the command palette that ran a command has closed: it gives the focus
 * back to where it was right after the command starts.
 */
export function afterPalette(focus: () => void): void {
  window.setTimeout(focus, 0);
}

/** A path relative to the Jupyter root, or null when `absolute` is outside it. */
export function rootRelative(absolute: string | null): string | null {
  if (!absolute) {
    return null;
  }
  const root = PageConfig.getOption('serverRoot').replace(/\/+$/, '');
  const path = absolute.replace(/\/+$/, '');
  if (!root) {
    return null;
  }
  if (path === root) {
    return '';
  }
  return path.startsWith(root + '/') ? path.slice(root.length + 1) : null;
}

/** A file-name-safe form of a title. */
export function slug(title: string): string {
  const cleaned = title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return cleaned || 'conversation';
}

/** Save `blob` as a download named `name`. */
export function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A clearer error when the server has no such route (a feature it does not have). */
export function unavailable(error: unknown, feature: string): unknown {
  if (error instanceof APIError && error.missing) {
    return new Error(
      `${feature} is not available on this server (its jupyter-convo has no such route yet).`
    );
  }
  return error;
}
