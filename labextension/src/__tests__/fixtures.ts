/**
 * Events and conversations shaped like the server sends them (events/schema.py wire form).
 */
import { IConversation, IEvent } from '../types';

let clock = Date.parse('2025-03-01T12:00:00Z');

/** An event of `kind` with id `id`; timestamps increase by a second per call. */
export function ev(
  id: number,
  kind: string,
  fields: Record<string, unknown> = {}
): IEvent {
  clock += 1000;
  return {
    id,
    timestamp: new Date(clock).toISOString(),
    source: 'environment',
    kind,
    cause: null,
    ...fields
  } as IEvent;
}

export function conversation(
  id: string,
  updatedAt: string,
  fields: Partial<IConversation> = {}
): IConversation {
  return {
    id,
    user_id: 'owner',
    title: `Conversation ${id}`,
    status: 'RUNNING',
    agent_state: 'running',
    created_at: updatedAt,
    updated_at: updatedAt,
    trigger: 'gui',
    repository: null,
    model: 'scripted-model',
    sandbox: 'process',
    workspace: null,
    prompt_tokens: 0,
    completion_tokens: 0,
    cost: 0,
    last_event_id: -1,
    error: null,
    tags: {},
    ...fields
  };
}

/** A run: start, user message, a command that waits for confirmation. */
export function confirmationRun(): IEvent[] {
  return [
    ev(0, 'status', { status: 'STARTING_RUNTIME' }),
    ev(1, 'status', { status: 'READY' }),
    ev(2, 'message', { source: 'user', text: 'list the files please' }),
    ev(3, 'agent_state', { state: 'running' }),
    ev(4, 'llm_call', {
      source: 'agent',
      model: 'scripted-model',
      prompt_tokens: 100,
      completion_tokens: 20,
      cost: 0.001
    }),
    ev(5, 'command', {
      source: 'agent',
      command: 'rm -rf build',
      security_risk: 'high',
      confirmation: 'awaiting'
    }),
    ev(6, 'agent_state', { state: 'awaiting_user_confirmation' })
  ];
}
