"""The agent loop: ask the LLM, run the tools it calls, log everything, move the AgentState.

The event log is the controller's only memory. Each step builds the LLM messages from the
log, logs the LLM call, the actions and their observations, and every state change as an
``agent_state`` event before observers see it. A new controller over an existing log picks
up where the last one stopped (history, metrics, the current task's step count, an action
waiting for confirmation) without re-running anything.

The loop runs as one asyncio task; user input arrives through ``handle_input`` at any time.
Pausing lets the step in flight complete; stopping cancels it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..events.inputs import AgentStateInput, ConfirmationInput, MessageInput, UserInput
from ..events.schema import (
    ActionBase,
    AgentState,
    AgentStateEvent,
    CondensationEvent,
    ConfirmationEvent,
    ErrorEvent,
    Event,
    EventBase,
    FinishEvent,
    LLMCallEvent,
    MessageEvent,
    ThinkEvent,
)
from ..events.sink import EventSink
from .condense import CondensationFailed, Condenser, estimate_tokens, latest_condensation
from .history import IncrementalHistory, Message, tool_call_for
from .llm import LLM_CONTEXT_TOO_LONG, LLM_RATE_LIMITED, LLMClient, LLMError, LLMResponse, ToolCall
from .metrics import Metrics
from .prompts import system_prompt
from .security import Assessment, build_analyzer, combine, needs_confirmation
from .settings import AgentSettings
from .stuck import STUCK_CODE, detect_stuck
from .tools.base import Tool
from .workspace import Workspace

logger = logging.getLogger(__name__)

AGENT_ERROR = "AGENT_ERROR"
AGENT_MAX_ITERATIONS = "AGENT_MAX_ITERATIONS"
AGENT_BUDGET_EXCEEDED = "AGENT_BUDGET_EXCEEDED"
AGENT_STUCK = STUCK_CODE
AGENT_TOOL_ARGUMENTS = "AGENT_TOOL_ARGUMENTS"  # told to the LLM as the tool call's result
AGENT_TOOL_FAILED = "AGENT_TOOL_FAILED"  # idem: a tool raised instead of answering

S = AgentState
ALLOWED_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    S.LOADING: frozenset(
        {S.RUNNING, S.AWAITING_USER_INPUT, S.AWAITING_USER_CONFIRMATION, S.STOPPED, S.ERROR}
    ),
    S.RUNNING: frozenset(
        {
            S.AWAITING_USER_INPUT,
            S.AWAITING_USER_CONFIRMATION,
            S.PAUSED,
            S.STOPPED,
            S.FINISHED,
            S.ERROR,
            S.RATE_LIMITED,
        }
    ),
    S.AWAITING_USER_INPUT: frozenset({S.RUNNING, S.STOPPED, S.ERROR}),
    S.AWAITING_USER_CONFIRMATION: frozenset({S.RUNNING, S.STOPPED, S.ERROR}),
    # A paused agent still completes the step in flight, which may end in any of these.
    S.PAUSED: frozenset(
        {
            S.RUNNING,
            S.STOPPED,
            S.AWAITING_USER_INPUT,
            S.AWAITING_USER_CONFIRMATION,
            S.FINISHED,
            S.ERROR,
            S.RATE_LIMITED,
        }
    ),
    S.STOPPED: frozenset({S.RUNNING}),
    S.FINISHED: frozenset({S.RUNNING, S.STOPPED}),
    S.ERROR: frozenset({S.RUNNING, S.STOPPED}),
    S.RATE_LIMITED: frozenset({S.RUNNING, S.STOPPED, S.ERROR}),
}
# States an AgentStateInput(state="running") may resume from (a message resumes any state).
RESUMABLE = frozenset({S.PAUSED, S.RATE_LIMITED, S.ERROR})
# What the runtime logs each time it starts, before the agent's first event.
RUNTIME_START_KINDS = frozenset({"status", "sandbox"})
STOP_GRACE = 10.0  # seconds a cancelled step may take to clean up before its tool is closed
STUCK_WINDOW = 200  # recent events the stuck check looks at
NEW_MESSAGE_REJECTION = "the user sent a new message instead"


@dataclass(frozen=True)
class _Call:
    """One tool call of an LLM answer: an action for a tool, or the error saying why not."""

    tool: Tool | None = None
    action: ActionBase | None = None
    error: ErrorEvent | None = None


@dataclass(frozen=True)
class _Pending:
    """A logged action waiting for the user's answer, and the calls of its step after it."""

    action: ActionBase
    tool: Tool
    remaining: list[_Call] = field(default_factory=list)
    confirmed: bool = False


@dataclass
class _Snapshot:
    """What a restarted controller learns from the log."""

    metrics: Metrics
    task_cost: float
    awaiting: ActionBase | None


def rebuild_from_log(events: Iterable[EventBase]) -> _Snapshot:
    """Metrics totals, the current task's steps and cost, and an action still awaiting."""
    metrics = Metrics()
    state = S.LOADING
    task_cost = 0.0
    awaiting: ActionBase | None = None
    for event in events:
        if isinstance(event, AgentStateEvent):
            state = event.state
        elif isinstance(event, MessageEvent) and event.source == "user":
            if state not in (S.RUNNING, S.PAUSED):  # the same rule as _accept_message
                metrics.iterations = 0
                task_cost = 0.0
        elif isinstance(event, LLMCallEvent):
            metrics.prompt_tokens += event.prompt_tokens
            metrics.completion_tokens += event.completion_tokens
            metrics.cost += event.cost
            metrics.latency += event.latency
            metrics.llm_calls += 1
            metrics.iterations += 1
            task_cost += event.cost
            awaiting = None  # a later step means the earlier wait is over
        elif isinstance(event, CondensationEvent):  # the summary's own LLM call
            metrics.prompt_tokens += event.prompt_tokens
            metrics.completion_tokens += event.completion_tokens
            metrics.cost += event.cost
            metrics.llm_calls += 1
            task_cost += event.cost
        elif isinstance(event, ActionBase) and event.confirmation == "awaiting":
            awaiting = event
        elif awaiting is not None and event.cause == awaiting.id:
            awaiting = None  # answered, or it has a result
    return _Snapshot(metrics=metrics, task_cost=task_cost, awaiting=awaiting)


class AgentController:
    """Runs one conversation's agent loop over its events (see the module doc); it reads and
    writes them only through ``events``, the sink the runtime owns."""

    def __init__(
        self,
        *,
        events: EventSink,
        llm: LLMClient,
        tools: Sequence[Tool],
        settings: AgentSettings,
        workspace: Workspace,
        instructions: str = "",
    ) -> None:
        names = [tool.name for tool in tools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate tool names: {', '.join(duplicates)}")
        self.events = events
        self.llm = llm
        self.settings = settings
        self.workspace = workspace
        self.state = S.LOADING
        self.metrics = Metrics()
        self.system_prompt = system_prompt(
            workspace=str(workspace.root),
            extra_instructions=settings.extra_instructions,
            instructions=instructions,
        )
        self._tools = {tool.name: tool for tool in tools}
        self._analyzer = build_analyzer(settings, workspace.root)
        self._tool_specs = [tool.spec() for tool in tools]
        self._task: asyncio.Task[None] | None = None
        self._pending: _Pending | None = None
        self._resume: _Pending | None = None
        self._task_cost = 0.0
        self._seen_id = -1  # the last event the latest LLM request was built from
        # The LLM messages so far, extended from the log's new events each step.
        self._history = IncrementalHistory(
            system_prompt=self.system_prompt, max_chars=settings.max_output_chars
        )
        self._condenser = Condenser(llm, settings, self.system_prompt)
        self._running_tool: Tool | None = None
        self._last_state_event: Event | None = None
        self._waiters: list[tuple[frozenset[AgentState], asyncio.Future[AgentState]]] = []
        self._started = False
        self._stopping = False
        self._closed = False

    # ------------------------------------------------------------ public API

    @property
    def awaiting_action_id(self) -> int | None:
        """The id of the action waiting for the user's confirmation, if any."""
        return self._pending.action.id if self._pending is not None else None

    @property
    def busy(self) -> bool:
        """True while the loop task is alive (a step or a wait for its end is in progress)."""
        return self._task is not None and not self._task.done()

    async def start(
        self, initial_message: str | None = None, image_urls: Sequence[str] = ()
    ) -> None:
        """Rebuild from the log, log ``initial_message`` if given and run the loop.

        Returns once the loop is under way; wait with ``wait_for_state``. Without a message
        the agent waits for the user (or for the confirmation the log shows it waiting for).
        """
        if self._started:
            raise RuntimeError("start() was already called on this controller")
        if self._closed:
            raise RuntimeError("the controller is closed")
        self._started = True
        history = self.events.read()
        snapshot = rebuild_from_log(history)
        self.metrics = snapshot.metrics
        self._task_cost = snapshot.task_cost
        condensation = latest_condensation(history)
        if condensation is not None:  # the LLM goes on from the view it had
            self._history = self._condenser.history(history, condensation)
        if snapshot.awaiting is not None:
            tool = self._tool_for(snapshot.awaiting)
            if tool is not None:
                self._pending = _Pending(snapshot.awaiting, tool)
        # The runtime logs its own start (``status`` and ``sandbox`` events) before the
        # agent's first event: only another event makes this a resumed conversation.
        resumed = any(event.kind not in RUNTIME_START_KINDS for event in history)
        self._last_state_event = self._append(
            AgentStateEvent(state=S.LOADING, reason="resuming" if resumed else "starting")
        )
        if initial_message:
            self._accept_message(initial_message, image_urls)
        elif self._pending is not None:
            reason = f"action {self._pending.action.id} waits for your confirmation"
            self._set_state(S.AWAITING_USER_CONFIRMATION, reason)
        else:
            self._set_state(S.AWAITING_USER_INPUT, "waiting for your message")

    async def handle_input(self, item: UserInput) -> Event:
        """Apply a user message, confirmation answer or state request; returns its event.

        A confirmation for another action than the waiting one raises ``ValueError``. A
        state change that is not allowed now is refused with a warning; the event returned
        is then the current state's.
        """
        if not self._started:
            raise RuntimeError("the controller has not been started")
        if self._closed:
            raise RuntimeError("the controller is closed")
        if isinstance(item, MessageInput):
            return self._accept_message(item.text, item.image_urls)
        if isinstance(item, ConfirmationInput):
            return self._accept_confirmation(item)
        return await self._accept_state(item)

    async def stop(self, reason: str = "stopped by the user") -> None:
        """Cancel the step in flight (interrupting its tool) and enter ``stopped``."""
        if self.state is S.STOPPED and not self.busy:
            return
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_GRACE)
            tool = self._running_tool
            if not done:
                logger.warning("The agent step did not end %ss after stop", STOP_GRACE)
                if tool is not None:
                    await self._close_tool(tool)
            elif tool is not None:
                await self._interrupt_tool(tool)
            self._running_tool = None
        self._set_state(S.STOPPED, reason)

    async def close(self) -> None:
        """Stop and release the tools' processes and kernels. Idempotent."""
        if self._closed:
            return
        await self.stop("the conversation was closed")
        self._closed = True
        for tool in self._tools.values():
            await self._close_tool(tool)
        if self._analyzer is not None:
            try:
                await self._analyzer.close()
            except Exception:
                logger.warning("Closing the security analyzer failed", exc_info=True)

    async def join(self, timeout: float | None = None) -> None:
        """Wait until the loop task has ended: no step is in flight or about to start."""
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            raise TimeoutError(f"the agent loop still runs after {timeout}s")

    async def wait_for_state(self, *states: AgentState, timeout: float | None = None) -> AgentState:
        """Return as soon as the agent is (or enters) one of ``states``.

        Every change is seen, even one that is left again at once. Raises ``TimeoutError``
        naming the current state when ``timeout`` seconds pass first.
        """
        wanted = frozenset(states)
        if self.state in wanted:
            return self.state
        future: asyncio.Future[AgentState] = asyncio.get_running_loop().create_future()
        waiter = (wanted, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            names = ", ".join(sorted(s.value for s in wanted))
            raise TimeoutError(
                f"the agent did not reach {names} within {timeout}s (it is {self.state.value})"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    # ------------------------------------------------------------ user input

    def _accept_message(self, text: str, image_urls: Iterable[str]) -> Event:
        if self._pending is not None:
            self._answer_pending(confirmed=False, reason=NEW_MESSAGE_REJECTION)
        event = self._append(MessageEvent(source="user", text=text, image_urls=list(image_urls)))
        if self.state is not S.RUNNING:
            if self.state is not S.PAUSED:
                self._begin_task()
            self._stopping = False
            self._set_state(S.RUNNING, "the user sent a message")
        self._ensure_loop()
        return event

    def _accept_confirmation(self, item: ConfirmationInput) -> Event:
        pending = self._pending
        if pending is None or self.state is not S.AWAITING_USER_CONFIRMATION:
            raise ValueError(
                f"no action is awaiting confirmation (the agent is {self.state.value})"
            )
        if item.action_id != pending.action.id:
            raise ValueError(
                f"action {item.action_id} is not awaiting confirmation; "
                f"action {pending.action.id} is"
            )
        event = self._answer_pending(confirmed=item.confirmed, reason=item.reason)
        answer = "confirmed" if item.confirmed else "rejected"
        self._set_state(S.RUNNING, f"the user {answer} action {pending.action.id}")
        self._ensure_loop()
        return event

    def _answer_pending(self, *, confirmed: bool, reason: str) -> Event:
        """Log the answer to the waiting action and queue the rest of its step."""
        pending = self._pending
        assert pending is not None
        self._pending = None
        event = self._append(
            ConfirmationEvent(cause=pending.action.id, confirmed=confirmed, reason=reason)
        )
        # A rejected action ends its step: the LLM sees the rejection and plans again.
        if confirmed:
            self._resume = replace(pending, confirmed=True)
        return event

    async def _accept_state(self, item: AgentStateInput) -> Event:
        if item.state == "stopped":
            await self.stop()
        elif item.state == "paused":
            if self.state is S.RUNNING:
                self._set_state(S.PAUSED, "paused by the user; the step in flight completes")
            else:
                logger.warning("Cannot pause the agent: it is %s", self.state.value)
        elif self.state in RESUMABLE:
            self._stopping = False
            self._set_state(S.RUNNING, "resumed by the user")
            self._ensure_loop()
        elif self.state is not S.RUNNING:
            logger.warning("Cannot resume the agent: it is %s", self.state.value)
        assert self._last_state_event is not None
        return self._last_state_event

    # ------------------------------------------------------------ the loop

    def _ensure_loop(self) -> None:
        if self.busy:
            return  # the live loop sees the new state or queued work at its next check
        self._task = asyncio.create_task(self._run(), name="agent-loop")

    async def _run(self) -> None:
        try:
            while not self._stopping:
                resume, self._resume = self._resume, None
                if resume is not None:
                    await self._continue_pending(resume)
                elif self.state is S.RUNNING:
                    if self._limit_reached():
                        break
                    await self._step()
                    self._check_stuck()
                else:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("The agent loop failed")
            if not self._stopping:
                self._report_crash(exc)

    def _report_crash(self, exc: Exception) -> None:
        try:
            self._append(ErrorEvent(code=AGENT_ERROR, message=_short(exc)))
            self._set_state(S.ERROR, "the agent failed")
        except Exception:
            logger.exception("Could not record the agent failure")

    def _messages(self) -> list[Message]:
        """The next request's messages, from the log's events since the last step."""
        new_events = self.events.read(after_id=self._history.checkpoint)
        if new_events:
            self._seen_id = max(self._seen_id, new_events[-1].id)
        return self._history.messages(new_events)

    async def _step(self) -> None:
        """One LLM step: ask (condensing the history first if it grew too long), log the
        answer, run its tool calls."""
        messages = self._messages()
        tokens = estimate_tokens(messages, self._tool_specs)
        if self._condenser.too_long(tokens) and await self._condense("context_window", tokens):
            messages = self._messages()
        try:
            response = await self.llm.complete(messages, self._tool_specs)
        except LLMError as exc:
            if exc.code == LLM_CONTEXT_TOO_LONG and await self._condense("context_error", tokens):
                return  # the loop asks again, with the condensed history
            state = S.RATE_LIMITED if exc.code == LLM_RATE_LIMITED else S.ERROR
            self._fail(exc.code, exc.message, state)
            return
        if self._stopping:
            return
        self._record_llm_call(response)
        calls = [self._parse(call) for call in response.tool_calls]
        text = (response.content or "").strip()
        if not calls:
            if text:
                self._append(MessageEvent(source="agent", text=text))
            if not self._unread_user_message():
                reason = "waiting for your answer" if text else "the model gave an empty answer"
                self._set_state(S.AWAITING_USER_INPUT, reason)
            return
        await self._run_calls(self._with_thought(calls, text))

    async def _condense(self, reason: str, tokens: int) -> bool:
        """Log a condensation and continue from it; False (with a warning) if none is made."""
        events = self.events.read()
        try:
            event = await self._condenser.condense(
                events, reason=reason, tokens_before=tokens, tools=self._tool_specs
            )
        except CondensationFailed as exc:
            logger.warning("Could not condense the history: %s", exc.message)
            return False
        if self._stopping:
            return False
        logged = self._append(event)
        assert isinstance(logged, CondensationEvent)
        self.metrics.prompt_tokens += logged.prompt_tokens
        self.metrics.completion_tokens += logged.completion_tokens
        self.metrics.cost += logged.cost
        self.metrics.llm_calls += 1
        self._task_cost += logged.cost
        self._history = self._condenser.history(events, logged)
        return True

    def _with_thought(self, calls: list[_Call], text: str) -> list[_Call]:
        """The answer's text becomes the first action's thought (a message if none fits)."""
        if not text:
            return calls
        for index, call in enumerate(calls):
            if call.action is not None and not isinstance(call.action, ThinkEvent):
                action = call.action.model_copy(update={"thought": text})
                return [*calls[:index], replace(call, action=action), *calls[index + 1 :]]
        self._append(MessageEvent(source="agent", text=text))
        return calls

    async def _run_calls(self, calls: Sequence[_Call]) -> None:
        for index, call in enumerate(calls):
            if self._stopping:
                return
            if call.error is not None:
                self._append(call.error)
                continue
            assert call.action is not None and call.tool is not None
            action = await self._assess(call.action)
            risky = needs_confirmation(self.settings.confirmation_mode, action)
            if risky:
                action = action.model_copy(update={"confirmation": "awaiting"})
            logged = self._append(action)
            assert isinstance(logged, ActionBase)
            if risky:
                self._pending = _Pending(logged, call.tool, list(calls[index + 1 :]))
                reason = f"action {logged.id} waits for your confirmation"
                self._set_state(S.AWAITING_USER_CONFIRMATION, reason)
                return
            if not await self._execute(call.tool, logged):
                return
            # Let the event streams send what was just logged: a tool that finishes
            # without waiting (think) would otherwise hold a whole step's events back.
            await asyncio.sleep(0)

    async def _assess(self, action: ActionBase) -> ActionBase:
        """``action`` with the analyzer's risk and reason (see agent/security.py)."""
        if self._analyzer is None:
            return action
        try:
            verdict = await self._analyzer.analyze(action)
        except Exception as exc:  # an analyzer must never take the agent down
            logger.warning("The security analyzer failed", exc_info=True)
            verdict = Assessment("unknown", f"the security analyzer failed: {_short(exc)}")
        return combine(action, verdict)

    async def _continue_pending(self, pending: _Pending) -> None:
        """Run a confirmed action, then the rest of its step."""
        if await self._execute(pending.tool, pending.action):
            await self._run_calls(pending.remaining)

    async def _execute(self, tool: Tool, action: ActionBase) -> bool:
        """Run ``action`` and log its observation; False when the task ended (finish, stop)."""
        # Left set when cancelled, so that stop() can interrupt the tool afterwards.
        self._running_tool = tool
        observation: EventBase | None
        try:
            observation = await tool.execute(action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("Tool %s failed on action %d", tool.name, action.id, exc_info=True)
            observation = ErrorEvent(
                code=AGENT_TOOL_FAILED,
                message=f"The {tool.name} tool failed: {_short(exc)}",
                tool_call_id=action.tool_call_id,
            )
        self._running_tool = None
        if observation is not None:
            update: dict[str, object] = {"cause": action.id}
            if "tool_call_id" in type(observation).model_fields:
                update["tool_call_id"] = action.tool_call_id
            self._append(observation.model_copy(update=update))
        if self._stopping:
            return False
        if isinstance(action, FinishEvent):
            if not self._unread_user_message():
                self._set_state(S.FINISHED, "the agent finished the task")
            return False
        return True

    def _unread_user_message(self) -> bool:
        """Did the user write after the last LLM request was built? Then the agent goes on."""
        return any(
            isinstance(event, MessageEvent) and event.source == "user"
            for event in self.events.read(after_id=self._seen_id)
        )

    def _parse(self, call: ToolCall) -> _Call:
        """An action for ``call``, or the error the LLM gets back as the call's result."""

        def refused(message: str) -> _Call:
            error = ErrorEvent(
                code=AGENT_TOOL_ARGUMENTS,
                message=message,
                tool_call_id=call.id,
                tool_name=call.name,
                tool_arguments=call.arguments,
            )
            return _Call(error=error)

        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self._tools))
            return refused(f"Unknown tool {call.name!r}. The tools are: {known}.")
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return refused(
                f"The arguments for {call.name} are not valid JSON ({exc.msg} at "
                f"position {exc.pos}). Send one JSON object."
            )
        if not isinstance(arguments, dict):
            kind = type(arguments).__name__
            return refused(f"The arguments for {call.name} must be a JSON object, not {kind}.")
        try:
            action = tool.parse(arguments, tool_call_id=call.id)
        except (ValueError, TypeError) as exc:  # ToolArgumentError, pydantic errors
            return refused(f"Invalid arguments for {call.name}: {_short(exc, with_type=False)}")
        return _Call(tool=tool, action=action.model_copy(update={"tool_call_id": call.id}))

    # ------------------------------------------------------------ limits and bookkeeping

    def _record_llm_call(self, response: LLMResponse) -> None:
        self._append(
            LLMCallEvent(
                model=response.model or self.settings.llm.model,
                prompt_tokens=response.prompt_tokens,
                completion_tokens=response.completion_tokens,
                cost=response.cost,
                latency=response.latency,
                response_id=response.response_id,
            )
        )
        metrics = self.metrics
        metrics.prompt_tokens += response.prompt_tokens
        metrics.completion_tokens += response.completion_tokens
        metrics.cost += response.cost
        metrics.latency += response.latency
        metrics.llm_calls += 1
        metrics.iterations += 1
        self._task_cost += response.cost

    def _begin_task(self) -> None:
        """A user message to an idle agent starts a task with fresh step and cost budgets."""
        self.metrics.iterations = 0
        self._task_cost = 0.0

    def _limit_reached(self) -> bool:
        limit = self.settings.max_iterations
        if self.metrics.iterations >= limit:
            self._fail(
                AGENT_MAX_ITERATIONS,
                f"The agent reached its limit of {limit} steps for this task. "
                "Send a message to let it continue.",
            )
            return True
        budget = self.settings.max_budget_per_task
        if budget is not None and self._task_cost > budget:
            self._fail(
                AGENT_BUDGET_EXCEEDED,
                f"This task has cost ${self._task_cost:.4f}, over its budget of "
                f"${budget:.4f}. Send a message to let it continue.",
            )
            return True
        return False

    def _check_stuck(self) -> None:
        if not self.settings.stuck_detection:
            return
        if self.state not in (S.RUNNING, S.AWAITING_USER_INPUT):
            return
        recent = self.events.read(after_id=max(-1, self.events.next_id - 1 - STUCK_WINDOW))
        reason = detect_stuck(recent)
        if reason is not None:
            self._fail(AGENT_STUCK, f"The agent seems stuck: {reason}. Send a message to help.")

    def _fail(self, code: str, message: str, state: AgentState = S.ERROR) -> None:
        self._append(ErrorEvent(code=code, message=message))
        self._set_state(state, code)

    # ------------------------------------------------------------ state and helpers

    def _set_state(self, new: AgentState, reason: str = "") -> None:
        """Log the change, then make it visible; refuse (with a warning) what is not allowed."""
        old = self.state
        if new is old:
            return
        if new not in ALLOWED_TRANSITIONS[old]:
            logger.warning("Refused agent state change %s -> %s", old.value, new.value)
            return
        self._last_state_event = self._append(AgentStateEvent(state=new, reason=reason))
        self.state = new
        waiters = [w for w in self._waiters if new in w[0]]
        for waiter in waiters:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(new)

    def _append(self, event: EventBase) -> Event:
        return self.events.emit(event)

    def _tool_for(self, action: ActionBase) -> Tool | None:
        try:
            name, _ = tool_call_for(action)
        except ValueError:
            return None
        return self._tools.get(name)

    async def _interrupt_tool(self, tool: Tool) -> None:
        """Make a tool whose execution was cancelled usable again (or closed)."""
        try:
            await asyncio.wait_for(tool.interrupt(), STOP_GRACE)
        except Exception:
            logger.warning("Interrupting tool %s failed; closing it", tool.name, exc_info=True)
            await self._close_tool(tool)

    async def _close_tool(self, tool: Tool) -> None:
        try:
            await tool.close()
        except Exception:
            logger.warning("Closing tool %s failed", tool.name, exc_info=True)


def _short(exc: BaseException, *, with_type: bool = True, limit: int = 500) -> str:
    """A one-paragraph description of ``exc`` for an event (never a traceback)."""
    text = str(exc).strip() or type(exc).__name__
    if with_type and not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
