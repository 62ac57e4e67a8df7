/**
 * The messages between the notebook widget's Python side (jupyter_convo/kernel/widgets.py)
 * and its front end. Events never go through a synced trait (that would resend the whole
 * list on every change): the model's store (widget/store.ts) asks for its window once,
 * then gets new events in batches; a view asks for earlier ones when the user wants them.
 *
 * Python -> front end:
 * - `window` (answer to `sync`): the last `max_rows` events;
 * - `earlier` (answer to `earlier`): events before the oldest one a view shows;
 * - `append`: new events for every model; `gap` when the batch holds more events than a
 *   view keeps (the views start again from these);
 * - `done`: a button's action ran (ok or not).
 * Every `events` message carries `total`: how many rows the conversation has so far.
 *
 * Front end -> Python: `sync`, `earlier`, `send`, `confirm`, `reject`, `stop`.
 */
import { SandboxSummary } from '../models/state';
import { IEvent } from '../types';

export interface IEventsMessage {
  type: 'window' | 'earlier' | 'append';
  /** The store or view that asked (none for `append`, which every model takes). */
  view?: string;
  events: IEvent[];
  total: number;
  gap?: boolean;
}

export interface IDoneMessage {
  type: 'done';
  view: string;
  action: string;
  ok: boolean;
}

export type FromKernel = IEventsMessage | IDoneMessage;

export type ToKernel =
  | { type: 'sync'; view: string }
  | { type: 'earlier'; view: string; before_id: number; count: number }
  | { type: 'send'; view: string; text: string }
  | { type: 'confirm' | 'reject' | 'stop'; view: string };

/** The header state the Python side syncs as the `state` trait. */
export interface IWidgetState {
  conversation_id: string;
  title: string | null;
  status: string | null;
  agent_state: string | null;
  error: string | null;
  metrics: {
    prompt_tokens: number;
    completion_tokens: number;
    cost: number;
    llm_calls: number;
  };
  /** The action waiting for confirmation: id, kind and risk. */
  awaiting: { id: number; kind: string; security_risk: string } | null;
  /** The start task while the runtime starts (null once READY). */
  start_task: { status: string; detail: string | null } | null;
  start_error: string | null;
  /** How the agent's tools are isolated (the last `sandbox` event), null until said. */
  sandbox: SandboxSummary | null;
}

/** The part of an anywidget model the view uses (a test can pass its own). */
export interface IWidgetModel {
  get(name: 'state'): IWidgetState;
  get(name: 'max_rows'): number;
  get(name: 'notice'): { text: string; error: boolean };
  on(event: string, callback: (...args: any[]) => void): void;
  off(
    event?: string | null,
    callback?: ((...args: any[]) => void) | null
  ): void;
  send(content: ToKernel): void;
}
