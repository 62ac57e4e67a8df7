"""Condensation end to end: a scripted run overflows a small context window and goes on;
restart and cassette replay see the condensed view the LLM saw. Real log, cassette,
tools and controller; the scripted OpenAI-compatible server is the LLM."""

# ruff: noqa: F811 (tests take the imported make_agent fixture as a parameter)
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_controller import TIMEOUT, Agent, make_agent  # noqa: F401 (the controller tests' fixture)

from jupyter_convo.agent.cassette import Cassette
from jupyter_convo.agent.condense import SUMMARY_REQUEST, estimate_tokens
from jupyter_convo.agent.llm import LLMClient
from jupyter_convo.agent.tools import build_tools
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    AgentState,
    CommandEvent,
    CondensationEvent,
)
from jupyter_convo.share.replay import run_replay
from jupyter_convo.share.source import source_from_conversation
from jupyter_convo.testing import ScriptedLLM, context_length_error, reply, tool_call

pytestmark = pytest.mark.integration

S = AgentState
TASK = "Print the long lines one by one"
OUTPUT_CHARS = 3_000  # each command prints this much: ~800 tokens per step
STEPS = 8
WINDOW = 6_000  # tokens; the tools' schemas and the system prompt alone take ~2,700


def printing_steps(count: int) -> list[Any]:
    return [
        tool_call(
            "terminal",
            {"command": f"python3 -c \"print('{i}' * {OUTPUT_CHARS})\"", "security_risk": "low"},
        )
        for i in range(count)
    ]


def agent_requests(llm: ScriptedLLM) -> list[dict[str, Any]]:
    return [r for r in llm.requests if SUMMARY_REQUEST not in json.dumps(r["messages"][-1])]


def summary_requests(llm: ScriptedLLM) -> list[dict[str, Any]]:
    return [r for r in llm.requests if SUMMARY_REQUEST in json.dumps(r["messages"][-1])]


def condensed_agent(make_agent: Callable[..., Agent], **settings: Any) -> Agent:
    return make_agent(
        llm_options={"context_window": WINDOW},
        condensation={"keep_turns": 2},
        **settings,
    )


async def test_a_run_that_overflows_the_window_is_condensed_and_goes_on(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([*printing_steps(STEPS), reply("All done.")])
    scripted_llm.add_script([reply("SUMMARY: printed lines 0 to N.")], match=SUMMARY_REQUEST)
    agent = condensed_agent(make_agent)
    await agent.controller.start(TASK)
    await agent.settle(S.AWAITING_USER_INPUT, S.ERROR)
    assert agent.controller.state is S.AWAITING_USER_INPUT, agent.errors()

    # Every step ran once, in order: the condensed requests kept their place in the script.
    commands = [e for e in agent.events() if isinstance(e, CommandEvent)]
    assert [c.command[c.command.index("'") + 1] for c in commands] == [str(i) for i in range(STEPS)]
    assert agent.events("message")[-1].text == "All done."  # type: ignore[union-attr]

    condensations = [e for e in agent.events() if isinstance(e, CondensationEvent)]
    assert condensations, "the run never condensed"
    assert len(summary_requests(scripted_llm)) == len(condensations)
    for event in condensations:
        assert event.reason == "context_window"
        assert event.tokens_after < event.tokens_before
        assert event.summary.startswith("SUMMARY: printed lines")
        assert event.start_id == condensations[0].start_id  # each covers the one before
    # Every request stayed within the window and kept the task, as the user wrote it.
    for request in agent_requests(scripted_llm):
        assert estimate_tokens(request["messages"], request["tools"]) <= WINDOW
        assert request["messages"][1] == {"role": "user", "content": TASK}
    last = agent_requests(scripted_llm)[-1]["messages"]
    assert "SUMMARY: printed lines" in last[2]["content"]
    # The full log was never rewritten: every output is still there.
    assert len(agent.events("command_output")) == STEPS
    assert agent.controller.metrics.llm_calls == len(scripted_llm.requests)


async def test_a_context_length_error_condenses_and_retries(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    # No window is known for the scripted model: only the endpoint's error condenses.
    scripted_llm.add_script(
        [
            *printing_steps(3),
            context_length_error(),
            tool_call("think", {"thought": "go on"}),
            reply("Finished."),
        ]
    )
    scripted_llm.add_script([reply("SUMMARY: three lines printed.")], match=SUMMARY_REQUEST)
    agent = make_agent(condensation={"keep_turns": 2, "enabled": False})
    await agent.controller.start("Please continue: I said use python3")
    await agent.settle(S.AWAITING_USER_INPUT, S.ERROR)
    assert agent.controller.state is S.AWAITING_USER_INPUT, agent.errors()
    (event,) = [e for e in agent.events() if isinstance(e, CondensationEvent)]
    assert event.reason == "context_error"
    assert agent.errors() == []
    assert agent.events("message")[-1].text == "Finished."  # type: ignore[union-attr]


async def test_user_messages_of_the_condensed_part_are_kept_verbatim(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [*printing_steps(2), reply("Waiting."), *printing_steps(4), reply("Done.")]
    )
    scripted_llm.add_script([reply("SUMMARY: short.")], match=SUMMARY_REQUEST)
    agent = condensed_agent(make_agent)
    await agent.controller.start(TASK)
    await agent.settle(S.AWAITING_USER_INPUT)
    await agent.controller.handle_input(MessageInput(text="Also: never touch data.csv"))
    await agent.settle(S.AWAITING_USER_INPUT)
    said = next(
        e
        for e in agent.events("message")
        if e.text == "Also: never touch data.csv"  # type: ignore[union-attr]
    )
    last = [e for e in agent.events() if isinstance(e, CondensationEvent)][-1]
    assert last.start_id < said.id <= last.end_id, "the script must condense past the message"
    assert last.summary.endswith("verbatim:]\n- Also: never touch data.csv")
    assert last.summary.startswith("SUMMARY: short.")


async def test_restart_after_a_condensation_continues_from_the_same_view(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([*printing_steps(STEPS), reply("All done."), reply("Again.")])
    scripted_llm.add_script([reply("SUMMARY: printed lines.")], match=SUMMARY_REQUEST)
    first = condensed_agent(make_agent, name="same")
    await first.controller.start(TASK)
    await first.settle(S.AWAITING_USER_INPUT)
    assert first.events("condensation")
    before = agent_requests(scripted_llm)[-1]["messages"]
    await first.close()

    # A larger window after the restart: no new condensation, the logged one still applies.
    second = make_agent(name="same", llm_options={"context_window": 100 * WINDOW})
    await second.controller.start()
    await second.controller.handle_input(MessageInput(text="Once more"))
    await second.settle(S.AWAITING_USER_INPUT)
    after = agent_requests(scripted_llm)[-1]["messages"]
    assert after[: len(before)] == before
    assert after[len(before) :] == [
        {"role": "assistant", "content": "All done."},
        {"role": "user", "content": "Once more"},
    ]
    assert second.events("message")[-1].text == "Again."  # type: ignore[union-attr]


async def test_cassette_replay_reproduces_the_condensed_run(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    scripted_llm.add_script([*printing_steps(STEPS), reply("All done.")])
    scripted_llm.add_script([reply("SUMMARY: printed lines.")], match=SUMMARY_REQUEST)
    recorded = condensed_agent(make_agent, name="recorded")
    await recorded.controller.start(TASK)
    await recorded.settle(S.AWAITING_USER_INPUT)
    await recorded.close()
    recorded_requests = len(scripted_llm.requests)

    source = source_from_conversation(tmp_path / "recorded")
    target = tmp_path / "replayed"
    settings = recorded.settings
    workspace = Workspace(target / "workspace")
    log = EventLog(target / "events.jsonl")
    cassette = Cassette(target / "cassette.jsonl")
    tools = build_tools(workspace, settings)
    llm = LLMClient(settings.llm, cassette=cassette)
    outcome = await run_replay(
        source,
        "cassette",
        log=log,
        tools=tools,
        settings=settings,
        workspace=workspace,
        llm=llm,
        cassette=cassette,
        step_timeout=TIMEOUT,
    )
    try:
        assert outcome.summary.diverged == 0 and outcome.summary.reproduced == STEPS
        assert len(scripted_llm.requests) == recorded_requests, "all answers came from it"
        replayed = [e for e in log.read() if isinstance(e, CondensationEvent)]
        original = [e for e in source.events if isinstance(e, CondensationEvent)]
        assert [(e.summary, e.turns) for e in replayed] == [(e.summary, e.turns) for e in original]
        # The LLM was asked exactly what it was asked the first time (workspace aside).
        served = json.dumps([e.request["messages"] for e in cassette.entries()])
        served = served.replace(str(workspace.root), str(recorded.workspace.root))
        assert served == json.dumps([e.request["messages"] for e in source.cassette])
    finally:
        await outcome.controller.close()
        await llm.close()
        cassette.close()
        log.close()
