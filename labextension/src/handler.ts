import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Where the server extension serves its API, relative to the server's base URL. */
export const API_NAMESPACE = 'api/convo';

/**
 * A request the server refused. `missing` is true when the route itself does not exist
 * (the server extension is not installed or not enabled), as opposed to a JSON 404 for a
 * conversation that is not there.
 */
export class APIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly missing: boolean = false
  ) {
    super(message);
    this.name = 'APIError';
  }
}

/**
 * Call the server API: `endPoint` is relative to `{base_url}api/convo/`. Answers the JSON
 * body, `undefined` for 204, or a `Blob` for any other content type (downloads). Refusals
 * raise `APIError` with the server's message (its JSON `message` field).
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  // JupyterLab's default ('no-store') appends a bare timestamp parameter to GET URLs, which
  // our routes refuse as an unknown query parameter; 'no-cache' revalidates instead.
  const options: RequestInit = { cache: 'no-cache', ...init };
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, options, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const contentType = response.headers.get('Content-Type') ?? '';
  // application/json, and JSON formats such as application/x-ipynb+json.
  const isJSON = /[/+]json\b/.test(contentType);
  if (!response.ok) {
    let message = response.statusText || `HTTP ${response.status}`;
    if (isJSON) {
      try {
        const body = await response.json();
        message = body.message || body.reason || message;
      } catch {
        // keep the status text
      }
    }
    // Our routes answer errors in JSON; Jupyter's own 404 page means the route is unknown.
    const missing = response.status === 404 && !isJSON;
    throw new APIError(response.status, message, missing);
  }
  if (response.status === 204) {
    return undefined as T;
  }
  if (isJSON) {
    return (await response.json()) as T;
  }
  return (await response.blob()) as T;
}

/** The WebSocket URL of a conversation's event stream (events after `afterId`). */
export function eventsSocketUrl(
  conversationId: string,
  afterId: number,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  const path = URLExt.join(
    settings.wsUrl,
    API_NAMESPACE,
    'conversations',
    encodeURIComponent(conversationId),
    'events/ws'
  );
  let url = `${path}?after_id=${afterId}`;
  if (settings.token && settings.appendToken) {
    url += `&token=${encodeURIComponent(settings.token)}`;
  }
  return url;
}
