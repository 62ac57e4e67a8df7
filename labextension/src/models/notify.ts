/**
 * When to tell the user about a conversation they started: it finished (or answered and
 * waits for them), failed, or waits for a confirmation. Decided from two states, so a
 * notice fires once per change and never for what was already true.
 */
import { IConversationState } from './state';

export type NoticeKind = 'finished' | 'replied' | 'failed' | 'confirm';

export interface INotice {
  kind: NoticeKind;
  /** A key that is the same for the same occurrence (to never notify twice). */
  key: string;
  message: string;
}

function name(state: IConversationState): string {
  return state.title
    ? `"${state.title}"`
    : `Conversation ${state.id.slice(0, 8)}`;
}

function failed(state: IConversationState): boolean {
  return state.status === 'ERROR' || state.agentState === 'error';
}

/** The notice for going from `prev` to `next`, if any. */
export function noticeFor(
  prev: IConversationState,
  next: IConversationState
): INotice | null {
  if (next.deleted) {
    return null;
  }
  if (failed(next) && !failed(prev)) {
    const why = next.error ? `: ${next.error}` : '';
    return {
      kind: 'failed',
      key: `failed@${next.lastSeenId}`,
      message: `${name(next)} failed${why}`
    };
  }
  if (next.awaiting && next.awaiting.id !== prev.awaiting?.id) {
    const action = next.awaiting;
    return {
      kind: 'confirm',
      key: `confirm@${action.id}`,
      message: `${name(next)} waits for your confirmation (${action.kind}, risk ${action.security_risk ?? 'unknown'})`
    };
  }
  if (next.agentState !== prev.agentState) {
    if (next.agentState === 'finished') {
      return {
        kind: 'finished',
        key: `finished@${next.lastSeenId}`,
        message: `${name(next)} finished`
      };
    }
    if (next.agentState === 'awaiting_user_input') {
      return {
        kind: 'replied',
        key: `replied@${next.lastSeenId}`,
        message: `${name(next)} answered and waits for your reply`
      };
    }
  }
  return null;
}
