/**
 * The panel's fold against the fixtures the Python fold is tested with
 * (tests/fixtures/fold/*.json): the same events must give the same state in both.
 */
import * as fs from 'fs';
import * as path from 'path';

import { IConversationState, emptyState, reduceEvents } from '../models/state';
import { IEvent } from '../types';

const FIXTURES = path.resolve(__dirname, '../../../tests/fixtures/fold');

interface IFixture {
  description: string;
  start: Record<string, any> | null;
  events: IEvent[];
  expected: Record<string, unknown>;
}

/** The state a fold continues from: the fixture's `start` (the server's row). */
function startState(start: Record<string, any> | null): IConversationState {
  const state = emptyState('c1');
  if (!start) {
    return state;
  }
  return {
    ...state,
    title: start.title ?? null,
    status: start.status ?? null,
    agentState: start.agent_state ?? null,
    error: start.error ?? null,
    model: start.model ?? null,
    promptTokens: start.prompt_tokens ?? 0,
    completionTokens: start.completion_tokens ?? 0,
    cost: start.cost ?? 0,
    lastEventId: start.last_event_id ?? -1,
    updatedAt: start.updated_at ?? null
  };
}

/** The state in the fixtures' (Python `ConversationFold.summary()`) shape. */
function summary(state: IConversationState): Record<string, unknown> {
  return {
    title: state.title,
    status: state.status,
    agent_state: state.agentState,
    error: state.error,
    model: state.model,
    prompt_tokens: state.promptTokens,
    completion_tokens: state.completionTokens,
    cost: state.cost,
    llm_calls: state.llmCalls,
    last_event_id: state.lastEventId,
    last_seen_id: state.lastSeenId,
    updated_at: state.updatedAt,
    awaiting_id: state.awaiting ? state.awaiting.id : null,
    last_message: state.lastMessage,
    sandbox_id: state.sandbox ? state.sandbox.id : null
  };
}

const files = fs
  .readdirSync(FIXTURES)
  .filter(name => name.endsWith('.json'))
  .sort();

describe('the fold matches the shared fixtures', () => {
  it('finds the fixtures', () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  it.each(files)('%s', name => {
    const fixture: IFixture = JSON.parse(
      fs.readFileSync(path.join(FIXTURES, name), 'utf-8')
    );
    const state = reduceEvents(startState(fixture.start), fixture.events);
    expect(summary(state)).toEqual(fixture.expected);
  });
});
