import { noticeFor } from '../models/notify';
import { emptyState, reduceEvent, reduceEvents } from '../models/state';
import { confirmationRun, ev } from './fixtures';

/** Every notice a sequence of events raises, stepping one event at a time. */
function notices(events: ReturnType<typeof ev>[]) {
  let state = emptyState('abcdef123456');
  const raised: string[] = [];
  for (const event of events) {
    const next = reduceEvent(state, event);
    const notice = noticeFor(state, next);
    if (notice) {
      raised.push(`${notice.kind}: ${notice.message}`);
    }
    state = next;
  }
  return raised;
}

describe('noticeFor', () => {
  it('asks for a confirmation once per waiting action', () => {
    expect(notices(confirmationRun())).toEqual([
      'confirm: "list the files please" waits for your confirmation (command, risk high)'
    ]);
  });

  it('says when the agent finished or answered', () => {
    expect(
      notices([
        ev(0, 'message', { source: 'user', text: 'go' }),
        ev(1, 'agent_state', { state: 'running' }),
        ev(2, 'agent_state', { state: 'awaiting_user_input' }),
        ev(3, 'agent_state', { state: 'running' }),
        ev(4, 'agent_state', { state: 'finished' })
      ])
    ).toEqual([
      'replied: "go" answered and waits for your reply',
      'finished: "go" finished'
    ]);
  });

  it('says when it failed, once', () => {
    expect(
      notices([
        ev(0, 'agent_state', { state: 'running' }),
        ev(1, 'error', { code: 'LLM_UNAVAILABLE', message: 'down' }),
        ev(2, 'agent_state', {
          state: 'error',
          reason: 'LLM_UNAVAILABLE: down'
        }),
        ev(3, 'status', { status: 'ERROR', message: 'gone' })
      ])
    ).toEqual(['failed: Conversation abcdef12 failed: LLM_UNAVAILABLE: down']);
  });

  it('stays quiet for what does not change', () => {
    const state = reduceEvents(emptyState('c'), confirmationRun());
    expect(noticeFor(state, state)).toBeNull();
    expect(
      noticeFor(state, { ...state, deleted: true, agentState: 'finished' })
    ).toBeNull();
  });
});
