"""Replay mode "actions": the recorded actions re-run with the real tools, no LLM call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from share_helpers import STEP_TIMEOUT, ReplayTarget, executed_actions

from jupyter_convo.agent.history import build_messages
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.schema import (
    ActionBase,
    AgentState,
    LLMCallEvent,
    MessageEvent,
    PythonOutputEvent,
    ReplayStepEvent,
    ReplaySummaryEvent,
)
from jupyter_convo.share.source import load_source
from jupyter_convo.testing import ScriptedLLM, reply

pytestmark = pytest.mark.integration


async def test_every_step_of_the_example_reproduces_and_the_agent_goes_on_live(
    example_dir: Path, make_target: Callable[[str], ReplayTarget], scripted_llm: ScriptedLLM
) -> None:
    source = load_source(example_dir)
    target = make_target("replayed")
    summary = await target.replay(source, "actions")

    expected = executed_actions(source)
    steps = target.steps()
    assert [s.recorded_event_id for s in steps] == [a.id for a in expected]
    assert [s.verdict for s in steps] == ["reproduced"] * len(expected), target.diffs()
    assert [s.step for s in steps] == list(range(1, len(expected) + 1))
    for step, recorded in zip(steps, expected, strict=True):
        assert step.cause is not None
        action = target.log.get(step.cause)
        assert isinstance(action, ActionBase) and action.kind == recorded.kind
        assert step.observation_id is not None
        observation = target.log.get(step.observation_id)
        assert observation is not None and observation.cause == action.id
    assert isinstance(summary, ReplaySummaryEvent)
    assert (summary.mode, summary.steps, summary.reproduced, summary.diverged) == (
        "actions",
        9,
        9,
        0,
    )
    assert summary.source_conversation_id == "example-sales-summary"
    assert summary.message == "All 9 steps reproduced."
    assert scripted_llm.requests == [], "actions mode must not call the LLM"
    for name in ("sales.csv", "summary.txt"):
        assert (target.workspace.root / name).read_bytes() == (
            example_dir / "workspace" / name
        ).read_bytes()
    user_texts = [e.text for e in target.log.read() if isinstance(e, MessageEvent)]
    assert user_texts == [e.text for e in source.events if isinstance(e, MessageEvent)]

    # After the replay a live agent takes over the replayed history.
    controller = target.controller
    assert controller is not None
    assert controller.state is AgentState.AWAITING_USER_INPUT
    history = build_messages(target.log.read())
    answered = sum(1 for m in history if m["role"] == "assistant")
    scripted_llm.add_script([reply("unused")] * answered + [reply("Happy to help further.")])
    await controller.handle_input(MessageInput(text="Thanks! Anything else to check?"))
    await controller.wait_for_state(AgentState.AWAITING_USER_INPUT, timeout=STEP_TIMEOUT)
    await controller.join(STEP_TIMEOUT)
    last = target.log.read()[-2]
    assert isinstance(last, MessageEvent) and last.text == "Happy to help further."
    [request] = scripted_llm.requests
    contents = [str(m.get("content")) for m in request["messages"]]
    assert any("skipped rows: ['2024-02-11']" in c for c in contents)
    assert sum(isinstance(e, LLMCallEvent) for e in target.log.read()) == 12


async def test_a_planted_divergence_is_reported_at_its_step(
    example_dir: Path, make_target: Callable[[str], ReplayTarget]
) -> None:
    source = load_source(example_dir)
    planted_step = 4
    recorded_action = executed_actions(source)[planted_step - 1]
    for index, event in enumerate(source.events):
        if event.cause == recorded_action.id and isinstance(event, PythonOutputEvent):
            source.events[index] = event.model_copy(update={"stdout": "skipped rows: []\n"})
            break
    else:
        pytest.fail(f"no python output answers action {recorded_action.id}")

    target = make_target("diverged")
    summary = await target.replay(source, "actions")

    verdicts = {s.step: s.verdict for s in target.steps()}
    assert verdicts == {n: "diverged" if n == planted_step else "reproduced" for n in range(1, 10)}
    step = next(s for s in target.steps() if s.step == planted_step)
    assert isinstance(step, ReplayStepEvent)
    assert step.recorded_event_id == recorded_action.id
    assert "-  skipped rows: []" in step.diff
    assert "+  skipped rows: ['2024-02-11']" in step.diff
    assert summary.diverged_steps == [planted_step] and summary.reproduced == 8
    assert summary.message == "1 of 9 steps diverged (steps 4)."
