/**
 * A conversation's state folded from its events: the TypeScript twin of the one Python
 * fold (jupyter_convo/events/fold.py, which the server's metadata row and the kernel use),
 * continued from the metadata row, plus what a view tracks on top (the action waiting for
 * confirmation, the last agent message). Both folds are tested against the same fixtures
 * (tests/fixtures/fold/*.json; src/__tests__/fold.spec.ts here).
 *
 * Pure functions over plain objects: `reduceEvent(state, event)` returns a new state.
 */
import {
  EventOf,
  IActionEvent,
  IConversation,
  IEvent,
  isAction
} from '../types';

/** Runtime statuses (`status` events) as conversation statuses. */
const STATUS_OF_RUNTIME: Record<string, string> = {
  STARTING_RUNTIME: 'STARTING',
  BUILDING_RUNTIME: 'STARTING',
  SETTING_UP_WORKSPACE: 'STARTING',
  READY: 'RUNNING',
  STOPPING: 'STOPPED',
  STOPPED: 'STOPPED',
  ERROR: 'ERROR'
};

/** Error codes after which the agent loop is gone until a restart. */
const FATAL_ERROR_CODES = new Set(['RUNTIME_DIED', 'RUNTIME_START_FAILED']);
const MAX_ERROR_CHARS = 500;

export interface IConversationState {
  id: string;
  title: string | null;
  /** Conversation status: STARTING, RUNNING, STOPPED, ERROR, ARCHIVED (or null). */
  status: string | null;
  agentState: string | null;
  error: string | null;
  model: string | null;
  promptTokens: number;
  completionTokens: number;
  cost: number;
  /** LLM calls folded (since the metadata row the state continued from). */
  llmCalls: number;
  updatedAt: string | null;
  /** The last event folded into the metadata fields (as the server's row counts it). */
  lastEventId: number;
  /** The highest event id seen (folded or not): where a reconnect resumes. */
  lastSeenId: number;
  /** The action waiting for the user's confirmation, if any. */
  awaiting: IActionEvent | null;
  /** The agent's last message (or finish message). */
  lastMessage: string | null;
  /** The conversation was deleted while being watched. */
  deleted: boolean;
  /** The last `sandbox` event: how the agent's tools are isolated (null: not said yet). */
  sandbox: EventOf<'sandbox'> | null;
}

/** A conversation nothing is known about yet. */
export function emptyState(id: string): IConversationState {
  return {
    id,
    title: null,
    status: null,
    agentState: null,
    error: null,
    model: null,
    promptTokens: 0,
    completionTokens: 0,
    cost: 0,
    llmCalls: 0,
    updatedAt: null,
    lastEventId: -1,
    lastSeenId: -1,
    awaiting: null,
    lastMessage: null,
    deleted: false,
    sandbox: null
  };
}

/** The state the server's metadata row describes (events up to its last id are in). */
export function stateFromMetadata(meta: IConversation): IConversationState {
  return {
    ...emptyState(meta.id),
    title: meta.title,
    status: meta.status,
    agentState: meta.agent_state,
    error: meta.error,
    model: meta.model,
    promptTokens: meta.prompt_tokens,
    completionTokens: meta.completion_tokens,
    cost: meta.cost,
    updatedAt: meta.updated_at,
    lastEventId: meta.last_event_id,
    lastSeenId: -1
  };
}

function describeError(code: string, message: string | undefined): string {
  const text = message ? `${code}: ${message}` : code;
  return text.slice(0, MAX_ERROR_CHARS);
}

/** The metadata fold for one event past `lastEventId` (metadata.py's MetadataFold). */
function fold(state: IConversationState, event: IEvent): IConversationState {
  const next: IConversationState = {
    ...state,
    lastEventId: event.id,
    updatedAt: event.timestamp || state.updatedAt
  };
  switch (event.kind) {
    case 'llm_call':
      next.promptTokens += event.prompt_tokens ?? 0;
      next.completionTokens += event.completion_tokens ?? 0;
      next.cost += event.cost ?? 0;
      next.model = event.model || next.model;
      next.llmCalls += 1;
      break;
    case 'condensation': // the summary's own LLM call
      next.promptTokens += event.prompt_tokens ?? 0;
      next.completionTokens += event.completion_tokens ?? 0;
      next.cost += event.cost ?? 0;
      next.llmCalls += 1;
      break;
    case 'title':
      next.title = event.title || next.title;
      break;
    case 'message':
      if (event.source === 'user' && !next.title) {
        next.title = titleFromMessage(event.text ?? '');
      }
      break;
    case 'status': {
      const status = STATUS_OF_RUNTIME[String(event.status)];
      if (status) {
        next.status = status;
      }
      if (status === 'RUNNING') {
        next.error = null;
      } else if (status === 'ERROR') {
        next.error = describeError('RUNTIME_ERROR', event.message);
      }
      break;
    }
    case 'agent_state':
      foldAgentState(next, event);
      break;
    case 'error': {
      const code = String(event.code ?? '');
      next.error = describeError(code, event.message);
      if (FATAL_ERROR_CODES.has(code)) {
        // The loop is gone: no agent runs on until a restart.
        next.status = 'ERROR';
        next.agentState = 'error';
      }
      break;
    }
  }
  return next;
}

function foldAgentState(
  next: IConversationState,
  event: EventOf<'agent_state'>
): void {
  const state = String(event.state);
  next.agentState = state;
  if (state === 'error') {
    next.status = 'ERROR';
    if (event.reason) {
      next.error = event.reason.slice(0, MAX_ERROR_CHARS);
    }
  } else if (state === 'stopped') {
    return; // the runtime's status events say whether the conversation stopped
  } else if (
    next.status === 'ERROR' ||
    next.status === 'STARTING' ||
    next.status === null
  ) {
    next.status = 'RUNNING'; // the loop runs again (e.g. a new message after an error)
    next.error = null;
  }
}

/** A title from a user's first message, as the server makes it (manager/title.py). */
export function titleFromMessage(text: string, maxChars = 60): string {
  const line = text.split(/\r?\n/).find(part => part.trim().length > 0) ?? '';
  const words = line.split(/\s+/).filter(Boolean);
  if (!words.length) {
    return 'New conversation';
  }
  const title = words.join(' ');
  if (title.length <= maxChars) {
    return title;
  }
  const budget = maxChars - 1;
  const cut = title.slice(0, budget + 1);
  const space = cut.lastIndexOf(' ');
  const head = (
    space > 0 ? cut.slice(0, space) : title.slice(0, budget)
  ).replace(/[ ,.;:-]+$/, '');
  return (head || title.slice(0, budget)) + '…';
}

/** Track the action waiting for confirmation, the agent's last words, the sandbox. */
function track(state: IConversationState, event: IEvent): IConversationState {
  let { awaiting, lastMessage, sandbox } = state;
  if (event.kind === 'sandbox' && (!sandbox || sandbox.id <= event.id)) {
    sandbox = event;
  }
  if (isAction(event) && event.confirmation === 'awaiting') {
    awaiting = event;
  } else if (event.kind === 'confirmation') {
    if (awaiting && awaiting.id === event.cause) {
      awaiting = null;
    }
  } else if (
    event.kind === 'agent_state' &&
    event.state !== 'awaiting_user_confirmation'
  ) {
    awaiting = null;
  }
  if (event.kind === 'message' && event.source !== 'user') {
    lastMessage = event.text ?? '';
  } else if (event.kind === 'finish' && event.message) {
    lastMessage = event.message;
  }
  if (
    awaiting === state.awaiting &&
    lastMessage === state.lastMessage &&
    sandbox === state.sandbox
  ) {
    return state;
  }
  return { ...state, awaiting, lastMessage, sandbox };
}

/**
 * Fold one event in. Logged events past `lastEventId` update the metadata fields; every
 * logged event updates what the view tracks. Server notices (id -1) only carry a title.
 */
export function reduceEvent(
  state: IConversationState,
  event: IEvent
): IConversationState {
  if (event.id < 0) {
    if (event.kind === 'title' && event.title) {
      return { ...state, title: event.title };
    }
    return state;
  }
  let next = state;
  if (event.id > state.lastEventId) {
    next = fold(next, event);
  }
  next = track(next, event);
  if (event.id > next.lastSeenId) {
    next = next === state ? { ...next } : next;
    next.lastSeenId = event.id;
  }
  return next;
}

/** Fold many events in order. */
export function reduceEvents(
  state: IConversationState,
  events: Iterable<IEvent>
): IConversationState {
  let next = state;
  for (const event of events) {
    next = reduceEvent(next, event);
  }
  return next;
}

/**
 * The state word shown on a badge: what the agent does while the conversation runs, why
 * it ended once stopped, else the conversation status.
 */
export function displayState(
  status: string | null,
  agentState: string | null
): string {
  switch (status) {
    case 'STARTING':
      return 'starting';
    case 'ERROR':
      return 'error';
    case 'ARCHIVED':
      return 'archived';
    case 'STOPPED':
      return agentState === 'finished' || agentState === 'error'
        ? agentState
        : 'stopped';
    case 'RUNNING':
      return agentState || 'running';
    default:
      return agentState || (status ? status.toLowerCase() : 'unknown');
  }
}

/** What the sandbox badge reads from a `sandbox` event. */
export type SandboxSummary = Pick<
  EventOf<'sandbox'>,
  'mechanism' | 'confined' | 'network' | 'message'
>;

/**
 * The sandbox badge of a `sandbox` event: its class suffix, text and tooltip; null before
 * the runtime said how the agent's tools are isolated.
 */
export function sandboxBadge(
  sandbox: SandboxSummary | null
): { kind: string; text: string; title: string } | null {
  if (!sandbox) {
    return null;
  }
  if (!sandbox.confined) {
    return {
      kind: 'unconfined',
      text: 'unconfined',
      title: sandbox.message || "The agent's tools run unconfined."
    };
  }
  const network = sandbox.network !== false;
  return {
    kind: network ? 'confined' : 'no-network',
    text: network ? 'confined' : 'confined, no network',
    title: sandbox.message || `Confined (${sandbox.mechanism})`
  };
}

/** Whether the runtime is (or is getting) up, so Stop makes sense. */
export function isActive(state: IConversationState): boolean {
  return state.status === 'STARTING' || state.status === 'RUNNING';
}

/** The list row for a conversation, updated from a live state. */
export function patchConversation(
  conversation: IConversation,
  state: IConversationState
): IConversation {
  return {
    ...conversation,
    title: state.title ?? conversation.title,
    status: (state.status ?? conversation.status) as IConversation['status'],
    agent_state: state.agentState ?? conversation.agent_state,
    error: state.error,
    prompt_tokens: Math.max(conversation.prompt_tokens, state.promptTokens),
    completion_tokens: Math.max(
      conversation.completion_tokens,
      state.completionTokens
    ),
    cost: Math.max(conversation.cost, state.cost),
    last_event_id: Math.max(conversation.last_event_id, state.lastEventId),
    updated_at:
      state.updatedAt && state.updatedAt > conversation.updated_at
        ? state.updatedAt
        : conversation.updated_at
  };
}
