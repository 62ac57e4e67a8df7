import {
  displayState,
  emptyState,
  patchConversation,
  reduceEvent,
  reduceEvents,
  sandboxBadge,
  stateFromMetadata,
  titleFromMessage
} from '../models/state';
import { confirmationRun, conversation, ev } from './fixtures';

describe('reduceEvents', () => {
  it('folds status, agent state, metrics and title like the server', () => {
    const state = reduceEvents(emptyState('c1'), confirmationRun());
    expect(state.status).toBe('RUNNING');
    expect(state.agentState).toBe('awaiting_user_confirmation');
    expect(state.promptTokens).toBe(100);
    expect(state.completionTokens).toBe(20);
    expect(state.cost).toBeCloseTo(0.001);
    expect(state.model).toBe('scripted-model');
    expect(state.title).toBe('list the files please');
    expect(state.lastEventId).toBe(6);
    expect(state.lastSeenId).toBe(6);
  });

  it('tracks the action waiting for confirmation until it is answered', () => {
    let state = reduceEvents(emptyState('c1'), confirmationRun());
    expect(state.awaiting?.id).toBe(5);
    state = reduceEvent(
      state,
      ev(7, 'confirmation', { source: 'user', cause: 5, confirmed: true })
    );
    expect(state.awaiting).toBeNull();
  });

  it('drops the waiting action when the agent moves on', () => {
    let state = reduceEvents(emptyState('c1'), confirmationRun());
    state = reduceEvent(state, ev(7, 'agent_state', { state: 'stopped' }));
    expect(state.awaiting).toBeNull();
  });

  it('continues from metadata without counting its events twice', () => {
    const meta = conversation('c1', '2025-03-01T12:00:00Z', {
      prompt_tokens: 100,
      completion_tokens: 20,
      cost: 0.001,
      last_event_id: 6,
      agent_state: 'awaiting_user_confirmation'
    });
    // The newest page overlaps what the metadata already counts.
    const state = reduceEvents(stateFromMetadata(meta), [
      ...confirmationRun(),
      ev(7, 'llm_call', {
        prompt_tokens: 50,
        completion_tokens: 5,
        cost: 0.002
      })
    ]);
    expect(state.promptTokens).toBe(150);
    expect(state.completionTokens).toBe(25);
    expect(state.cost).toBeCloseTo(0.003);
    expect(state.awaiting?.id).toBe(5);
    expect(state.lastSeenId).toBe(7);
  });

  it('marks a dead runtime as an error and a new message as running again', () => {
    let state = reduceEvents(emptyState('c1'), confirmationRun());
    state = reduceEvent(
      state,
      ev(7, 'error', { code: 'RUNTIME_DIED', message: 'exit code -9' })
    );
    expect(state.status).toBe('ERROR');
    expect(state.error).toBe('RUNTIME_DIED: exit code -9');
    state = reduceEvent(state, ev(8, 'status', { status: 'READY' }));
    expect(state.status).toBe('RUNNING');
    expect(state.error).toBeNull();
  });

  it('keeps the status when the agent stops (the runtime reports it)', () => {
    let state = reduceEvents(emptyState('c1'), confirmationRun());
    state = reduceEvent(state, ev(7, 'agent_state', { state: 'stopped' }));
    expect(state.status).toBe('RUNNING');
    state = reduceEvent(state, ev(8, 'status', { status: 'STOPPED' }));
    expect(state.status).toBe('STOPPED');
  });

  it('takes a title notice (id -1) without moving the ids', () => {
    const before = reduceEvents(emptyState('c1'), confirmationRun());
    const after = reduceEvent(before, ev(-1, 'title', { title: 'Renamed' }));
    expect(after.title).toBe('Renamed');
    expect(after.lastSeenId).toBe(before.lastSeenId);
    expect(
      reduceEvent(before, ev(-1, 'error', { code: 'INVALID_INPUT' }))
    ).toBe(before);
  });

  it('ignores an event seen twice', () => {
    const events = confirmationRun();
    const once = reduceEvents(emptyState('c1'), events);
    const twice = reduceEvent(once, events[4]);
    expect(twice.promptTokens).toBe(100);
  });

  it("remembers the agent's last words", () => {
    const state = reduceEvents(emptyState('c1'), [
      ev(0, 'message', { source: 'agent', text: 'Working on it' }),
      ev(1, 'finish', { source: 'agent', message: 'All done' })
    ]);
    expect(state.lastMessage).toBe('All done');
  });
});

describe('titleFromMessage', () => {
  it('takes the first non-blank line with whitespace collapsed', () => {
    expect(titleFromMessage('\n  clean   sales.csv \nthen plot')).toBe(
      'clean sales.csv'
    );
    expect(titleFromMessage('   ')).toBe('New conversation');
  });

  it('cuts long titles at a word boundary within the limit', () => {
    const title = titleFromMessage('word '.repeat(30));
    expect(title.length).toBeLessThanOrEqual(60);
    expect(title.endsWith('word…')).toBe(true);
    expect(titleFromMessage('x'.repeat(100))).toBe('x'.repeat(59) + '…');
  });
});

describe('displayState', () => {
  it('shows what the agent does while running, why it ended once stopped', () => {
    expect(displayState('RUNNING', 'awaiting_user_input')).toBe(
      'awaiting_user_input'
    );
    expect(displayState('RUNNING', null)).toBe('running');
    expect(displayState('STOPPED', 'finished')).toBe('finished');
    expect(displayState('STOPPED', 'running')).toBe('stopped');
    expect(displayState('STARTING', 'finished')).toBe('starting');
    expect(displayState('ERROR', 'running')).toBe('error');
    expect(displayState(null, null)).toBe('unknown');
  });
});

describe('patchConversation', () => {
  it('updates a list row from a live state, never going backwards', () => {
    const row = conversation('c1', '2025-03-01T12:00:00Z', { cost: 0.5 });
    const state = reduceEvents(emptyState('c1'), confirmationRun());
    const patched = patchConversation(row, state);
    expect(patched.agent_state).toBe('awaiting_user_confirmation');
    expect(patched.cost).toBe(0.5);
    expect(patched.last_event_id).toBe(6);
    expect(patched.updated_at > row.updated_at).toBe(true);
  });
});

describe('sandbox', () => {
  it('keeps the latest sandbox event for the badge', () => {
    let state = reduceEvent(
      emptyState('c1'),
      ev(1, 'sandbox', {
        mechanism: 'bubblewrap',
        confined: true,
        network: true
      })
    );
    expect(sandboxBadge(state.sandbox)?.kind).toBe('confined');
    state = reduceEvent(
      state,
      ev(9, 'sandbox', {
        mechanism: 'bubblewrap',
        confined: true,
        network: false,
        network_off_by: 'conversation'
      })
    );
    expect(sandboxBadge(state.sandbox)).toMatchObject({
      kind: 'no-network',
      text: 'confined, no network'
    });
  });

  it('says unconfined with the reason as its tooltip', () => {
    const state = reduceEvent(
      emptyState('c1'),
      ev(1, 'sandbox', {
        mechanism: 'none',
        confined: false,
        message: 'NOT CONFINED: bubblewrap is not installed'
      })
    );
    expect(sandboxBadge(state.sandbox)).toEqual({
      kind: 'unconfined',
      text: 'unconfined',
      title: 'NOT CONFINED: bubblewrap is not installed'
    });
    expect(sandboxBadge(emptyState('c2').sandbox)).toBeNull();
  });
});
