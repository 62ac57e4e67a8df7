/**
 * The server API calls the panel makes, each a thin typed wrapper of `requestAPI`.
 */
import { requestAPI } from './handler';
import {
  ICapabilities,
  IConversation,
  IConversationPage,
  ICreateConversation,
  IEventPage,
  IInputAccepted,
  IStartTask,
  IUserSettings,
  UserInput
} from './types';

/** Filters of `conversations/search`. */
export interface ISearchQuery {
  title__contains?: string;
  status?: string;
  limit?: number;
  page_id?: string | null;
}

function query(params: Record<string, string | number | null | undefined>) {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

function one(id: string, suffix = ''): string {
  return `conversations/${encodeURIComponent(id)}${suffix ? '/' + suffix : ''}`;
}

function post(body?: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body ?? {}) };
}

export const ConvoAPI = {
  searchConversations(q: ISearchQuery): Promise<IConversationPage> {
    return requestAPI<IConversationPage>(
      'conversations/search' + query({ ...q })
    );
  },

  getConversation(id: string): Promise<IConversation> {
    return requestAPI<IConversation>(one(id));
  },

  createConversation(body: ICreateConversation): Promise<IStartTask> {
    return requestAPI<IStartTask>('conversations', post(body));
  },

  renameConversation(id: string, title: string): Promise<IConversation> {
    return requestAPI<IConversation>(one(id), {
      method: 'PATCH',
      body: JSON.stringify({ title })
    });
  },

  deleteConversation(id: string): Promise<void> {
    return requestAPI<void>(one(id), { method: 'DELETE' });
  },

  startConversation(id: string): Promise<unknown> {
    return requestAPI<unknown>(one(id, 'start'), post());
  },

  stopConversation(id: string): Promise<IConversation> {
    return requestAPI<IConversation>(one(id, 'stop'), post());
  },

  sendMessage(id: string, text: string): Promise<IInputAccepted> {
    return requestAPI<IInputAccepted>(one(id, 'messages'), post({ text }));
  },

  sendInput(id: string, input: UserInput): Promise<IInputAccepted> {
    return requestAPI<IInputAccepted>(one(id, 'events'), post(input));
  },

  searchEvents(
    id: string,
    q: {
      after_id?: number;
      before_id?: number;
      limit?: number;
      reverse?: boolean;
      kind?: string;
    }
  ): Promise<IEventPage> {
    const params = {
      after_id: q.after_id,
      before_id: q.before_id,
      kind: q.kind,
      limit: q.limit,
      reverse: q.reverse === undefined ? undefined : String(q.reverse)
    };
    return requestAPI<IEventPage>(one(id, 'events/search') + query(params));
  },

  getStartTasks(ids: string[]): Promise<(IStartTask | null)[]> {
    const q = ids.map(id => `ids=${encodeURIComponent(id)}`).join('&');
    return requestAPI<(IStartTask | null)[]>(`start-tasks?${q}`);
  },

  /** The conversation as a zip (`GET conversations/{id}/export`). */
  exportConversation(id: string): Promise<Blob> {
    return requestAPI<Blob>(one(id, 'export'));
  },

  /** The conversation as a notebook (`GET conversations/{id}/notebook`). */
  conversationNotebook(id: string): Promise<unknown> {
    return requestAPI<unknown>(one(id, 'notebook'));
  },

  /** An export zip made into a new conversation of this user. */
  importConversation(zip: Blob): Promise<IConversation> {
    return requestAPI<IConversation>('conversations/import', {
      method: 'POST',
      body: zip,
      headers: { 'Content-Type': 'application/zip' }
    });
  },

  getSettings(): Promise<IUserSettings> {
    return requestAPI<IUserSettings>('settings');
  },

  getCapabilities(): Promise<ICapabilities> {
    return requestAPI<ICapabilities>('capabilities');
  }
};
