/**
 * The wire shapes of the server API (`{base_url}api/convo/`), as the Python models send them
 * (jupyter_convo/store/models.py, events/schema.py, events/inputs.py, server/models.py).
 */

/** Conversation status kept in the server's metadata. */
export type ConversationStatus =
  'STARTING' | 'RUNNING' | 'STOPPED' | 'ERROR' | 'ARCHIVED';

/** Where the agent loop is (events/schema.py AgentState). */
export type AgentState =
  | 'loading'
  | 'running'
  | 'awaiting_user_input'
  | 'awaiting_user_confirmation'
  | 'paused'
  | 'stopped'
  | 'finished'
  | 'error'
  | 'rate_limited';

/** `ConversationMetadata`: what the server knows without reading the event log. */
export interface IConversation {
  id: string;
  user_id: string | null;
  title: string | null;
  status: ConversationStatus;
  agent_state: string | null;
  created_at: string;
  updated_at: string;
  trigger: string;
  repository: string | null;
  model: string | null;
  sandbox: string;
  workspace: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  cost: number;
  last_event_id: number;
  error: string | null;
  tags: Record<string, string>;
}

/** `GET conversations/search`. */
export interface IConversationPage {
  items: IConversation[];
  next_page_id: string | null;
}

export type StartTaskStatus =
  | 'WORKING'
  | 'WAITING_FOR_SANDBOX'
  | 'PREPARING_WORKSPACE'
  | 'STARTING_CONVERSATION'
  | 'READY'
  | 'ERROR';

/** `POST conversations` answers the first start task (202). */
export interface IStartTask {
  id: string;
  conversation_id: string | null;
  user_id: string | null;
  status: StartTaskStatus;
  detail: string | null;
  request: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

/** `POST conversations` body (server/models.py CreateConversationRequest). */
export interface ICreateConversation {
  initial_message?: string;
  title?: string;
  model?: string;
  workspace?: string;
  sandbox?: 'process' | 'docker';
  confirmation_mode?: boolean;
  /** false cuts the network of the agent's commands and Python (process sandbox). */
  network?: boolean;
  trigger?: string;
  /** Replay one of the user's conversations step by step into the new one. */
  replay?: IReplayOptions;
}

/** `replay` of `POST conversations`: re-run the recorded actions (no LLM), or the
 * agent itself with its answers served from the recording (cassette). */
export interface IReplayOptions {
  source_conversation_id: string;
  mode: 'actions' | 'cassette';
}

/** `GET settings`: the user's display settings (never a secret value). */
export interface IUserSettings {
  llm_model: string | null;
  llm_base_url: string | null;
  confirmation_mode: boolean | null;
  max_iterations: number | null;
  max_budget_per_task: number | null;
  sandbox: string | null;
  llm_api_key_set?: boolean;
  secret_names?: string[];
}

/** A display bundle of a Python output: MIME type to data. */
export type MimeBundle = Record<string, unknown>;

/** Fields every event has; the kind-specific ones are read through `IEvent`. */
export interface IEventBase {
  id: number;
  timestamp: string;
  source: 'agent' | 'user' | 'environment';
  kind: string;
  cause: number | null;
}

/**
 * One event as sent over the WebSocket or by `events/search`. Kind-specific fields are
 * optional here: renderers read what their kind carries (see events/schema.py).
 */
export interface IEvent extends IEventBase {
  // actions
  security_risk?: 'unknown' | 'low' | 'medium' | 'high';
  confirmation?: 'none' | 'awaiting' | 'confirmed' | 'rejected';
  tool_call_id?: string | null;
  thought?: string;
  // message / finish
  text?: string;
  image_urls?: string[];
  message?: string;
  // command / command_output
  command?: string;
  exit_code?: number | null;
  output?: string;
  truncated?: boolean;
  timed_out?: boolean;
  cwd?: string;
  // python / python_output
  code?: string;
  stdout?: string;
  stderr?: string;
  result?: MimeBundle | null;
  display_data?: MimeBundle[];
  error?: IPythonError | string | null;
  execution_count?: number | null;
  // files
  path?: string;
  content?: string;
  diff?: string;
  file_text?: string | null;
  old_str?: string | null;
  new_str?: string | null;
  // confirmation, state, status, error, title, llm_call
  confirmed?: boolean;
  reason?: string;
  state?: AgentState | string;
  status?: string;
  title?: string;
  model?: string;
  prompt_tokens?: number;
  completion_tokens?: number;
  cost?: number;
  latency?: number;
  // sandbox: how the agent's tool processes are isolated
  mechanism?: string;
  confined?: boolean;
  network?: boolean;
  network_off_by?: 'server' | 'conversation' | null;
  home?: string | null;
  mounts?: ISandboxMount[];
  // replay_step / replay_summary
  step?: number;
  recorded_event_id?: number;
  verdict?: 'reproduced' | 'diverged';
  mode?: 'actions' | 'cassette';
  steps?: number;
  reproduced?: number;
  diverged?: number;
  skipped?: number;
  diverged_steps?: number[];
}

/** One path as the agent's processes see it (events/schema.py SandboxMount). */
export interface ISandboxMount {
  path: string;
  mode: 'ro' | 'rw' | 'hidden' | 'link';
  source?: string | null;
}

export interface IPythonError {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** `GET conversations/{id}/events/search`. */
export interface IEventPage {
  items: IEvent[];
  next_page_id: string | null;
}

/** What a user sends into a running conversation (events/inputs.py). */
export type UserInput =
  | { kind: 'message'; text: string; image_urls?: string[] }
  | {
      kind: 'confirmation';
      action_id: number;
      confirmed: boolean;
      reason?: string;
    }
  | { kind: 'agent_state'; state: 'paused' | 'running' | 'stopped' };

/** `POST conversations/{id}/messages` and `.../events` answer. */
export interface IInputAccepted {
  conversation_id: string;
  status: 'sent' | 'started';
}
