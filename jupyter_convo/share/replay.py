"""Replay a recorded run step by step and say, for every step, whether it reproduced.

Two modes, both into a fresh log and workspace with the real tools:

- ``actions``: the recorded actions are re-executed in order, without any LLM. Messages,
  LLM call records and refused tool calls are copied, so the new log reads like the old one
  and a live agent can take over from it afterwards.
- ``cassette``: the real ``AgentController`` runs, its LLM answers served from the recorded
  cassette (``CassetteLLM``); the recorded user messages and confirmation answers are fed to
  it whenever it waits for them.

Each re-executed action's observation is compared with the recorded one after
normalisation (``normalize``) and a ``replay_step`` event (verdict and diff) follows it in
the log; a ``replay_summary`` event closes the replay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..agent.cassette import Cassette
from ..agent.controller import AGENT_TOOL_FAILED, NEW_MESSAGE_REJECTION, AgentController
from ..agent.history import tool_call_for
from ..agent.llm import LLMClient
from ..agent.settings import AgentSettings
from ..agent.tools.base import Tool
from ..agent.workspace import Workspace
from ..events.inputs import ConfirmationInput, MessageInput
from ..events.log import EventLog
from ..events.redact import SecretRegistry
from ..events.schema import (
    OBSERVATION_KINDS,
    ActionBase,
    AgentState,
    ConfirmationEvent,
    ErrorEvent,
    Event,
    EventBase,
    LLMCallEvent,
    MessageEvent,
    ReplayMode,
    ReplayStepEvent,
    ReplaySummaryEvent,
    TitleEvent,
    utcnow,
)
from ..events.sink import EventSink, LogSink
from .cassette_llm import CassetteLLM
from .normalize import default_workspace_roots, observation_diff, rebase_text
from .source import ReplayRequest, ReplaySource, parse_replay_request

logger = logging.getLogger(__name__)

S = AgentState
REPLAY_FAILED = "REPLAY_FAILED"
# States in which the agent waits for the user (or has nothing left to do).
IDLE_STATES = (
    S.AWAITING_USER_INPUT,
    S.AWAITING_USER_CONFIRMATION,
    S.FINISHED,
    S.ERROR,
    S.RATE_LIMITED,
    S.STOPPED,
)
EXECUTABLE_KINDS = frozenset({"command", "python", "file_read", "file_edit"})
_REBASED_FIELDS = ("command", "code", "path", "file_text", "old_str", "new_str")


def is_observation(event: EventBase) -> bool:
    """An environment answer to an action (including a tool failure)."""
    return event.cause is not None and (
        event.kind in OBSERVATION_KINDS or isinstance(event, ErrorEvent)
    )


def recorded_observations(events: Sequence[EventBase]) -> dict[int, EventBase]:
    """The first observation answering each recorded action, by action id."""
    found: dict[int, EventBase] = {}
    for event in events:
        if is_observation(event) and event.cause is not None and event.cause not in found:
            found[event.cause] = event
    return found


# --- verdicts ------------------------------------------------------------------------------


@dataclass
class Judge:
    """Compares re-executed steps with the recorded ones and logs the verdicts."""

    source: ReplaySource
    log: EventLog
    workspace: Workspace
    observations: dict[int, EventBase] = field(default_factory=dict)
    step: int = 0
    reproduced: int = 0
    diverged_steps: list[int] = field(default_factory=list)
    skipped: int = 0

    def __post_init__(self) -> None:
        self.observations = recorded_observations(self.source.events)

    def has_observation(self, recorded: ActionBase) -> bool:
        return recorded.id in self.observations

    def judge(
        self,
        recorded: ActionBase | None,
        new_action_id: int | None,
        observation: EventBase | None,
        *,
        note: str = "",
    ) -> ReplayStepEvent:
        """Log the verdict for one re-executed action (``recorded`` None: an extra one)."""
        self.step += 1
        expected = self.observations.get(recorded.id) if recorded is not None else None
        diff = observation_diff(
            expected,
            observation,
            recorded_roots=self.source.workspace_roots,
            replayed_roots=[str(self.workspace.root)],
        )
        if note:
            diff = f"{note}\n{diff}" if diff else note
        verdict: Literal["reproduced", "diverged"] = "diverged" if diff else "reproduced"
        if diff:
            self.diverged_steps.append(self.step)
        else:
            self.reproduced += 1
        event = self.log.append(
            ReplayStepEvent(
                cause=new_action_id,
                step=self.step,
                recorded_event_id=recorded.id if recorded is not None else -1,
                recorded_observation_id=expected.id if expected is not None else None,
                observation_id=observation.id if observation is not None else None,
                verdict=verdict,
                diff=diff,
            )
        )
        assert isinstance(event, ReplayStepEvent)
        logger.info(
            "replay step %d (recorded action %s): %s", self.step, event.recorded_event_id, verdict
        )
        return event

    def summary(self, mode: ReplayMode) -> ReplaySummaryEvent:
        diverged = len(self.diverged_steps)
        if not self.step:
            message = "The recorded run had no steps to re-execute."
        elif diverged:
            listed = ", ".join(str(s) for s in self.diverged_steps[:20])
            message = f"{diverged} of {self.step} steps diverged (steps {listed})."
        else:
            message = f"All {self.step} steps reproduced."
        if self.skipped:
            message += f" {self.skipped} recorded actions never ran and were not re-executed."
        event = self.log.append(
            ReplaySummaryEvent(
                mode=mode,
                source_conversation_id=self.source.conversation_id,
                steps=self.step,
                reproduced=self.reproduced,
                diverged=diverged,
                skipped=self.skipped,
                diverged_steps=list(self.diverged_steps),
                message=message,
            )
        )
        assert isinstance(event, ReplaySummaryEvent)
        logger.info("replay of %s (%s): %s", self.source.conversation_id, mode, message)
        return event


# --- helpers ---------------------------------------------------------------------------------


def rebase_action(action: ActionBase, old_roots: Sequence[str], new_root: str) -> ActionBase:
    """The action with the recorded workspace's paths pointing at the new workspace."""
    update: dict[str, object] = {}
    for name in _REBASED_FIELDS:
        value = getattr(action, name, None)
        if isinstance(value, str):
            roots = [*old_roots, *default_workspace_roots(value)]
            rebased = rebase_text(value, roots, new_root)
            if rebased != value:
                update[name] = rebased
    return action.model_copy(update=update) if update else action


def _fresh(event: EventBase, **update: object) -> EventBase:
    """A copy to append to the new log: new id and timestamp, ``update`` applied."""
    return event.model_copy(update={"id": -1, "timestamp": utcnow(), **update})


async def execute_action(tool: Tool, action: ActionBase) -> EventBase | None:
    """Run ``action`` like the controller does: a tool that raises answers with an error."""
    try:
        return await tool.execute(action)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.warning("Tool %s failed on replayed action %d", tool.name, action.id, exc_info=True)
        return ErrorEvent(
            code=AGENT_TOOL_FAILED,
            message=f"The {tool.name} tool failed: {type(exc).__name__}: {exc}",
            tool_call_id=action.tool_call_id,
        )


# --- mode "actions" ------------------------------------------------------------------------


class ActionsReplay:
    """Re-executes a recorded run's actions with the real tools, without any LLM."""

    def __init__(
        self,
        source: ReplaySource,
        *,
        log: EventLog,
        tools: Sequence[Tool],
        workspace: Workspace,
    ) -> None:
        self.source = source
        self.log = log
        self.workspace = workspace
        self.tools = {tool.name: tool for tool in tools}
        self.judge = Judge(source, log, workspace)
        self._ids: dict[int, int] = {}  # recorded id -> new id
        self._awaiting: dict[int, tuple[ActionBase, ActionBase]] = {}  # recorded id -> pair

    async def run(self) -> ReplaySummaryEvent:
        for event in self.source.events:
            await self._replay_event(event)
        self.judge.skipped += sum(
            1 for recorded, _ in self._awaiting.values() if recorded.kind in EXECUTABLE_KINDS
        )
        return self.judge.summary("actions")

    def _append(self, event: EventBase, recorded_id: int) -> Event:
        appended = self.log.append(event)
        self._ids[recorded_id] = appended.id
        return appended

    async def _replay_event(self, event: Event) -> None:
        if isinstance(event, (MessageEvent, TitleEvent, LLMCallEvent)):
            self._append(_fresh(event), event.id)
        elif isinstance(event, ActionBase):
            await self._replay_action(event)
        elif isinstance(event, ConfirmationEvent):
            await self._replay_confirmation(event)
        elif isinstance(event, ErrorEvent) and event.cause is None and event.tool_call_id:
            # A refused tool call: the LLM saw it as the call's result; keep the history whole.
            self._append(_fresh(event), event.id)
        # Observations are re-made; states, statuses and other errors belong to the old run.

    async def _replay_action(self, recorded: ActionBase) -> None:
        action = rebase_action(recorded, self.source.workspace_roots, str(self.workspace.root))
        logged = self._append(_fresh(action, cause=None), recorded.id)
        assert isinstance(logged, ActionBase)
        if recorded.confirmation == "awaiting":
            self._awaiting[recorded.id] = (recorded, logged)
            return
        await self._run(recorded, logged)

    async def _replay_confirmation(self, recorded: ConfirmationEvent) -> None:
        cause = self._ids.get(recorded.cause) if recorded.cause is not None else None
        self._append(_fresh(recorded, cause=cause), recorded.id)
        pair = self._awaiting.pop(recorded.cause, None) if recorded.cause is not None else None
        if pair is None:
            return
        if recorded.confirmed:
            await self._run(*pair)
        elif pair[0].kind in EXECUTABLE_KINDS:
            self.judge.skipped += 1

    async def _run(self, recorded: ActionBase, action: ActionBase) -> None:
        """Execute ``action`` if the recorded run did, and judge its observation."""
        if not self.judge.has_observation(recorded):
            if recorded.kind in EXECUTABLE_KINDS:
                self.judge.skipped += 1  # interrupted or stopped before it ran
            return
        try:
            name, _ = tool_call_for(action)
        except ValueError:
            name = ""
        tool = self.tools.get(name)
        if tool is None:
            observation: EventBase | None = None
            note = f"no {name or action.kind!r} tool to re-execute this action"
        else:
            observation = await execute_action(tool, action)
            note = ""
        if observation is not None:
            update: dict[str, object] = {"cause": action.id}
            if "tool_call_id" in type(observation).model_fields:
                update["tool_call_id"] = action.tool_call_id
            observation = self.log.append(observation.model_copy(update=update))
        self.judge.judge(recorded, action.id, observation, note=note)


async def replay_actions(
    source: ReplaySource,
    *,
    log: EventLog,
    tools: Sequence[Tool],
    workspace: Workspace,
) -> ReplaySummaryEvent:
    """Mode ``actions`` (see the module doc); returns the logged summary."""
    return await ActionsReplay(source, log=log, tools=tools, workspace=workspace).run()


# --- mode "cassette" -----------------------------------------------------------------------


def recorded_inputs(events: Sequence[Event]) -> list[MessageEvent | ConfirmationEvent]:
    """The user's messages and confirmation answers, in order (automatic rejections, made
    because a message arrived instead, are left out: the message makes them again)."""
    inputs: list[MessageEvent | ConfirmationEvent] = []
    for event in events:
        if (isinstance(event, MessageEvent) and event.source == "user") or (
            isinstance(event, ConfirmationEvent) and event.reason != NEW_MESSAGE_REJECTION
        ):
            inputs.append(event)
    return inputs


class CassetteReplay:
    """Drives a real controller (LLM answers from the cassette) and judges each step."""

    def __init__(
        self,
        source: ReplaySource,
        *,
        controller: AgentController,
        log: EventLog,
        workspace: Workspace,
        step_timeout: float | None = None,
    ) -> None:
        self.source = source
        self.controller = controller
        self.log = log
        self.workspace = workspace
        self.step_timeout = step_timeout
        self.judge = Judge(source, log, workspace)
        self._recorded_actions: list[ActionBase] = [
            e for e in source.events if isinstance(e, ActionBase) and e.source == "agent"
        ]
        self._matched = 0
        self._pending: dict[int, ActionBase | None] = {}  # new action id -> recorded action
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()

    async def run(self) -> ReplaySummaryEvent:
        loop = asyncio.get_running_loop()

        def hand_over(event: Event) -> None:  # runs in the appending thread
            loop.call_soon_threadsafe(self._queue.put_nowait, event)

        unsubscribe = self.log.subscribe(hand_over)
        follower = asyncio.create_task(self._follow(), name="replay-judge")
        try:
            await self._drive()
            await self.controller.join(self.step_timeout)
        finally:
            unsubscribe()
            loop.call_soon_threadsafe(self._queue.put_nowait, None)
            await follower
        self._judge_leftovers()
        return self.judge.summary("cassette")

    async def _drive(self) -> None:
        inputs = list(recorded_inputs(self.source.events))
        first = inputs[0] if inputs else None
        if isinstance(first, MessageEvent):
            inputs.pop(0)
            await self.controller.start(first.text, first.image_urls)
        else:
            await self.controller.start()
        while True:
            state = await self.controller.wait_for_state(*IDLE_STATES, timeout=self.step_timeout)
            await self.controller.join(self.step_timeout)
            if not inputs:
                return
            item = inputs.pop(0)
            if isinstance(item, MessageEvent):
                await self.controller.handle_input(
                    MessageInput(text=item.text, image_urls=item.image_urls)
                )
            elif state is S.AWAITING_USER_CONFIRMATION:
                action_id = self.controller.awaiting_action_id
                assert action_id is not None
                await self.controller.handle_input(
                    ConfirmationInput(
                        action_id=action_id, confirmed=item.confirmed, reason=item.reason
                    )
                )
            else:
                logger.warning(
                    "Replay: the recorded run answered a confirmation (event %d) that this "
                    "run did not ask for; skipping it",
                    item.id,
                )

    async def _follow(self) -> None:
        while (event := await self._queue.get()) is not None:
            if isinstance(event, (ReplayStepEvent, ReplaySummaryEvent)):
                continue
            if isinstance(event, ActionBase) and event.source == "agent":
                recorded = (
                    self._recorded_actions[self._matched]
                    if self._matched < len(self._recorded_actions)
                    else None
                )
                self._matched += 1
                self._pending[event.id] = recorded
            elif is_observation(event) and event.cause in self._pending:
                recorded = self._pending.pop(event.cause)
                note = "" if recorded is not None else "the recorded run had no such action"
                self.judge.judge(recorded, event.cause, event, note=note)

    def _judge_leftovers(self) -> None:
        """Actions whose observation never came, and recorded ones never re-made."""
        for action_id, recorded in sorted(self._pending.items()):
            if recorded is not None and self.judge.has_observation(recorded):
                self.judge.judge(recorded, action_id, None)
            elif recorded is not None and recorded.kind in EXECUTABLE_KINDS:
                self.judge.skipped += 1
        for recorded in self._recorded_actions[self._matched :]:
            if self.judge.has_observation(recorded):
                self.judge.judge(
                    recorded, None, None, note="the replay did not re-make this action"
                )


async def replay_cassette(
    source: ReplaySource,
    *,
    controller: AgentController,
    log: EventLog,
    workspace: Workspace,
    step_timeout: float | None = None,
) -> ReplaySummaryEvent:
    """Mode ``cassette``: ``controller`` must use a ``CassetteLLM`` over ``source.cassette``."""
    replay = CassetteReplay(
        source, controller=controller, log=log, workspace=workspace, step_timeout=step_timeout
    )
    return await replay.run()


# --- both, with a live agent afterwards ----------------------------------------------------


@dataclass
class ReplayOutcome:
    summary: ReplaySummaryEvent
    controller: AgentController  # started; waits for the user (or goes on, if it was)


async def run_replay(
    source: ReplaySource,
    mode: ReplayMode,
    *,
    log: EventLog,
    tools: Sequence[Tool],
    settings: AgentSettings,
    workspace: Workspace,
    llm: LLMClient,
    cassette: Cassette | None = None,
    secrets: SecretRegistry | None = None,
    step_timeout: float | None = None,
    events: EventSink | None = None,
) -> ReplayOutcome:
    """Replay ``source`` into ``log`` and hand back a started controller that goes on live.

    ``llm`` is the live client used after the replay (it fails with ``LLM_NOT_CONFIGURED``
    when none is configured); in cassette mode the served answers go to ``cassette``.
    ``events`` is the sink the controller emits through (default: one over ``log``).
    """
    sink = events if events is not None else LogSink(log)
    new_root = str(workspace.root)
    roots = list(source.workspace_roots)

    def rewrite(text: str) -> str:
        return rebase_text(text, [*roots, *default_workspace_roots(text)], new_root)

    if mode == "actions":
        summary = await replay_actions(source, log=log, tools=tools, workspace=workspace)
        controller = AgentController(
            events=sink, llm=llm, tools=tools, settings=settings, workspace=workspace
        )
        await controller.start()
        return ReplayOutcome(summary, controller)
    replay_llm = CassetteLLM(
        source.cassette, fallback=llm, cassette=cassette, secrets=secrets, rewrite=rewrite
    )
    controller = AgentController(
        events=sink, llm=replay_llm, tools=tools, settings=settings, workspace=workspace
    )
    try:
        summary = await replay_cassette(
            source, controller=controller, log=log, workspace=workspace, step_timeout=step_timeout
        )
    except BaseException:
        await controller.close()  # a failed or cancelled replay leaves no loop running
        raise
    finally:
        replay_llm.live = True
    return ReplayOutcome(summary, controller)


async def replay_then_live(
    source: ReplaySource,
    mode: ReplayMode,
    *,
    log: EventLog,
    tools: Sequence[Tool],
    settings: AgentSettings,
    workspace: Workspace,
    llm: LLMClient,
    cassette: Cassette | None = None,
    secrets: SecretRegistry | None = None,
    events: EventSink | None = None,
) -> AgentController:
    """``run_replay`` for a runtime: a replay that fails is logged (``REPLAY_FAILED``) and a
    live agent takes over all the same; returns the started controller."""
    try:
        outcome = await run_replay(
            source,
            mode,
            log=log,
            tools=tools,
            settings=settings,
            workspace=workspace,
            llm=llm,
            cassette=cassette,
            secrets=secrets,
            events=events,
        )
        return outcome.controller
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.exception("The replay of %s failed", source.conversation_id)
        log.append(ErrorEvent(code=REPLAY_FAILED, message=f"The replay failed: {exc}"))
    controller = AgentController(
        events=events if events is not None else LogSink(log),
        llm=llm,
        tools=tools,
        settings=settings,
        workspace=workspace,
    )
    await controller.start()
    return controller


__all__ = [
    "IDLE_STATES",
    "REPLAY_FAILED",
    "ActionsReplay",
    "CassetteReplay",
    "Judge",
    "ReplayOutcome",
    "ReplayRequest",
    "is_observation",
    "parse_replay_request",
    "rebase_action",
    "recorded_inputs",
    "recorded_observations",
    "replay_actions",
    "replay_cassette",
    "replay_then_live",
    "run_replay",
]
