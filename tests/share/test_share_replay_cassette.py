"""Replay mode "cassette": the real agent loop, every LLM answer served from the recording."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from share_helpers import EXAMPLE, EXAMPLE_SPEC, STEP_TIMEOUT, ReplayTarget, executed_actions

from jupyter_convo.agent.history import build_messages, tool_call_for
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.schema import ActionBase, AgentState, LLMCallEvent, MessageEvent
from jupyter_convo.share.export import export_conversation
from jupyter_convo.share.source import load_source, read_cassette
from jupyter_convo.testing import ScriptedLLM, reply
from jupyter_convo.testing.examples import record_run

pytestmark = pytest.mark.integration


async def test_the_recorded_decisions_reproduce_every_step_then_the_llm_goes_live(
    example_dir: Path, make_target: Callable[[str], ReplayTarget], scripted_llm: ScriptedLLM
) -> None:
    source = load_source(example_dir)
    target = make_target("replayed")
    summary = await target.replay(source, "cassette")

    expected = executed_actions(source)
    steps = target.steps()
    assert [s.recorded_event_id for s in steps] == [a.id for a in expected]
    assert [s.verdict for s in steps] == ["reproduced"] * len(expected), target.diffs()
    assert (summary.mode, summary.steps, summary.reproduced, summary.diverged) == (
        "cassette",
        9,
        9,
        0,
    )
    assert scripted_llm.requests == [], "every answer must come from the cassette"

    # The agent made the recorded decisions: same tool calls, same messages, same LLM calls.
    replayed = [e for e in target.log.read() if isinstance(e, ActionBase)]
    recorded = [e for e in source.events if isinstance(e, ActionBase)]
    assert [tool_call_for(a) for a in replayed] == [tool_call_for(a) for a in recorded]
    texts = [e.text for e in target.log.read() if isinstance(e, MessageEvent)]
    assert texts == [e.text for e in source.events if isinstance(e, MessageEvent)]
    assert sum(isinstance(e, LLMCallEvent) for e in target.log.read()) == 11
    served = read_cassette(target.directory / "cassette.jsonl")
    assert [e.response for e in served] == [e.response for e in source.cassette if e.final]

    # The recording is used up: the next answer comes from the live (scripted) LLM.
    controller = target.controller
    assert controller is not None
    assert controller.state is AgentState.AWAITING_USER_INPUT
    answered = sum(1 for m in build_messages(target.log.read()) if m["role"] == "assistant")
    scripted_llm.add_script([reply("unused")] * answered + [reply("Live again.")])
    await controller.handle_input(MessageInput(text="One more thing?"))
    await controller.wait_for_state(AgentState.AWAITING_USER_INPUT, timeout=STEP_TIMEOUT)
    await controller.join(STEP_TIMEOUT)
    assert len(scripted_llm.requests) == 1
    agent_texts = [
        e.text for e in target.log.read() if isinstance(e, MessageEvent) and e.source == "agent"
    ]
    assert agent_texts[-1] == "Live again."


async def test_a_changed_environment_is_reported_from_the_first_step_it_touches(
    example_dir: Path, make_target: Callable[[str], ReplayTarget], scripted_llm: ScriptedLLM
) -> None:
    source = load_source(example_dir)
    target = make_target("diverged")
    # Plant a different sales.csv: creating it fails, and what reads it sees other numbers.
    (target.workspace.root / "sales.csv").write_text("date,region,amount\n2024-01-05,west,1\n")
    summary = await target.replay(source, "cassette")

    steps = {s.step: s for s in target.steps()}
    assert len(steps) == 9, "the recorded decisions are made whatever the observations"
    assert steps[1].verdict == "diverged"
    assert "already exists" in steps[1].diff
    assert steps[2].verdict == "diverged" and "+  2024-01-05,west,1" in steps[2].diff
    assert summary.diverged_steps[:2] == [1, 2]
    assert summary.diverged == len(summary.diverged_steps) and summary.steps == 9
    assert scripted_llm.requests == []


async def test_a_fresh_export_with_request_patches_replays_like_the_old_format(
    tmp_path: Path, make_target: Callable[[str], ReplayTarget], scripted_llm: ScriptedLLM
) -> None:
    """Today's exports (format 2) store each request as a patch on the one before; the
    committed example (format 1) stores them whole. Both give the same entries and replay
    the same decisions."""
    directory, metadata = await record_run(EXAMPLE_SPEC, tmp_path / "recorded")
    cassette_bytes = (directory / "cassette.jsonl").read_bytes()
    assert cassette_bytes.count(b'"patch"') == cassette_bytes.count(b"\n") - 1
    exported = tmp_path / "run.zip"
    manifest = export_conversation(directory, exported, metadata=metadata)
    assert manifest.format_version == 2
    source = load_source(exported)
    committed = load_source(EXAMPLE)
    assert len(source.cassette) == len(committed.cassette)
    for fresh, old in zip(source.cassette, committed.cassette, strict=True):
        assert len(fresh.request["messages"]) == len(old.request["messages"])
        assert [m["role"] for m in fresh.request["messages"]] == [
            m["role"] for m in old.request["messages"]
        ]
        assert set(fresh.request) == set(old.request)  # model, base_url, tools, params...

    target = make_target("replayed-v2")
    summary = await target.replay(source, "cassette")
    assert (summary.steps, summary.reproduced, summary.diverged) == (9, 9, 0), target.diffs()
    assert scripted_llm.requests == [], "every answer must come from the cassette"
