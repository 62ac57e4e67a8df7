/**
 * The controls around the event rows, shared by the panel's conversation view and the
 * notebook widget: buttons, the confirmation bar, the message box, the notice line and the
 * start progress.
 */
import { SandboxSummary, sandboxBadge } from '../models/state';
import { h } from './dom';

/** Start-task steps, in order (READY ends the start). */
export const START_STEPS = [
  'WORKING',
  'WAITING_FOR_SANDBOX',
  'PREPARING_WORKSPACE',
  'STARTING_CONVERSATION',
  'READY'
];

/** The action waiting for a confirmation, as the bar names it. */
export interface IWaitingAction {
  id: number;
  kind: string;
  security_risk: string;
}

export function button(text: string, className: string): HTMLButtonElement {
  const node = h('button', `jp-convo-button ${className}`, text);
  (node as HTMLButtonElement).type = 'button';
  return node as HTMLButtonElement;
}

/** The bar that names the waiting action, with its Confirm and Reject buttons. */
export class ConfirmBar {
  constructor(confirm: HTMLButtonElement, reject: HTMLButtonElement) {
    confirm.classList.add('jp-convo-confirm-button', 'jp-mod-accept');
    reject.classList.add('jp-convo-reject-button', 'jp-mod-warn');
    this._text = h('span', 'jp-convo-confirm-text');
    this.node = h('div', 'jp-convo-confirm', this._text, confirm, reject);
    this.node.setAttribute('role', 'alert');
    this.node.hidden = true;
  }

  readonly node: HTMLElement;

  /** Show the bar for `action`, or hide it (null). */
  show(action: IWaitingAction | null): void {
    this.node.hidden = !action;
    if (action) {
      this._text.replaceChildren(
        h('b', '', `Action ${action.id}`),
        ` (${action.kind}, risk ${action.security_risk}) waits for your confirmation`
      );
    }
  }

  private _text: HTMLElement;
}

/** The message box (Enter sends, Shift+Enter adds a line: the host wires the keys). */
export function messageBox(): HTMLTextAreaElement {
  const input = document.createElement('textarea');
  input.className = 'jp-convo-message jp-mod-styled';
  input.rows = 2;
  input.placeholder =
    'Message the agent (Enter to send, Shift+Enter for a new line)';
  input.setAttribute('aria-label', 'Message the agent');
  return input;
}

/** Whether a key press in the message box sends the message. */
export function isSendKey(event: KeyboardEvent): boolean {
  return event.key === 'Enter' && !event.shiftKey && !event.isComposing;
}

/** The line under the events: errors of the buttons, refused inputs. */
export function noticeLine(): HTMLElement {
  const node = h('div', 'jp-convo-notice');
  node.setAttribute('aria-live', 'polite');
  return node;
}

export function setNotice(node: HTMLElement, text: string, isError: boolean) {
  node.textContent = text;
  node.classList.toggle('jp-convo-notice-error', isError);
}

/** The start progress line, or null once the runtime is ready. */
export function startText(
  task: { status: string; detail?: string | null } | null,
  failure?: string | null
): { text: string; failed: boolean } | null {
  if (failure || task?.status === 'ERROR') {
    const why = failure || task?.detail || 'unknown error';
    return { text: `Could not start: ${why}`, failed: true };
  }
  if (!task || task.status === 'READY') {
    return null;
  }
  const step = Math.max(1, START_STEPS.indexOf(task.status) + 1);
  const what = task.status.replace(/_/g, ' ').toLowerCase();
  return {
    text: `Starting (${step}/${START_STEPS.length - 1}): ${what}…`,
    failed: false
  };
}

/** Show in `node` how the agent's tools are isolated (hidden until the runtime said so). */
export function showSandbox(
  node: HTMLElement,
  sandbox: SandboxSummary | null
): void {
  const badge = sandboxBadge(sandbox);
  node.hidden = !badge;
  if (badge) {
    node.className = `jp-convo-sandbox-badge jp-convo-sandbox-${badge.kind}`;
    node.textContent = badge.text;
    node.title = badge.title;
  }
}

/** Show `startText` in `node` (hidden when null). */
export function showStart(
  node: HTMLElement,
  progress: { text: string; failed: boolean } | null
): void {
  node.hidden = progress === null;
  node.classList.toggle('jp-convo-start-failed', Boolean(progress?.failed));
  node.textContent = progress?.text ?? '';
}
