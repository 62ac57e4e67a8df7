/**
 * The wire shapes of the server API (`{base_url}api/convo/`), named for the extension's
 * code. Every shape comes from `generated/api.ts`, which `jlpm build:types` generates from
 * `docs/openapi.yaml` (itself generated from the pydantic models by `scripts/openapi.py`);
 * `jlpm lint:check` fails when it drifts. Do not write wire shapes here by hand.
 */
import { components } from './generated/api';

type Schemas = components['schemas'];

/** Conversation status kept in the server's metadata. */
export type ConversationStatus = Schemas['ConversationStatus'];

/** Where the agent loop is (events/schema.py AgentState). */
export type AgentState = Schemas['AgentState'];

/** `ConversationMetadata`: what the server knows without reading the event log. */
export type IConversation = Schemas['ConversationMetadata'];

/** `GET conversations/search`. */
export type IConversationPage = Schemas['ConversationPage'];

export type StartTaskStatus = Schemas['StartTaskStatus'];

/** `POST conversations` answers the first start task (202). */
export type IStartTask = Schemas['StartTask'];

/** `POST conversations` body (server/models.py CreateConversationRequest). */
export type ICreateConversation = Schemas['CreateConversationRequest'];

/** `replay` of `POST conversations`. */
export type IReplayOptions = Schemas['ReplayOptions'];

/** `GET settings`: the user's display settings (never a secret value). */
export type IUserSettings = Schemas['UserSettings'];

/** `GET capabilities`: the sandbox kinds and agent backends the server offers. */
export type ICapabilities = Schemas['Capabilities'];

/** One sandbox kind of `GET capabilities`. */
export type ISandboxKind = Schemas['SandboxKindInfo'];

/** A display bundle of a Python output: MIME type to data. */
export type MimeBundle = Record<string, unknown>;

/** One event as sent over the WebSocket or by `events/search`: a union on `kind`. */
export type IEvent = Schemas['Event'];

/** The kinds of event (the `kind` field). */
export type EventKind = IEvent['kind'];

/** The event of one kind. */
export type EventOf<K extends EventKind> = Extract<IEvent, { kind: K }>;

/** Events that are actions (they carry a security risk and a confirmation state). */
export type IActionEvent = Extract<IEvent, { confirmation: unknown }>;

export type IPythonError = Schemas['PythonError'];

/** `GET conversations/{id}/events/search`. */
export type IEventPage = { items: IEvent[]; next_page_id?: string | null };

/** What a user sends into a running conversation (events/inputs.py). */
export type UserInput = Schemas['UserInput'];

/** `POST conversations/{id}/messages` and `.../events` answer. */
export type IInputAccepted = { conversation_id: string; status: string };

/** Whether an event is an action (it may wait for the user's confirmation). */
export function isAction(event: IEvent): event is IActionEvent {
  return 'confirmation' in event;
}
