"""The agent loop end to end: the real EventLog, LLMClient, cassette and tools, with the
scripted OpenAI-compatible server as the LLM. Every wait is on a log event or a state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_convo.agent.cassette import Cassette
from jupyter_convo.agent.controller import (
    AGENT_BUDGET_EXCEEDED,
    AGENT_MAX_ITERATIONS,
    AGENT_STUCK,
    AGENT_TOOL_ARGUMENTS,
    AgentController,
)
from jupyter_convo.agent.history import INTERRUPTED_RESULT
from jupyter_convo.agent.llm import LLMClient
from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools import build_tools
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.inputs import AgentStateInput, ConfirmationInput, MessageInput
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.events.schema import (
    OBSERVATION_KINDS,
    ActionBase,
    AgentState,
    AgentStateEvent,
    CommandEvent,
    ConfirmationEvent,
    ErrorEvent,
    Event,
    LLMCallEvent,
    MessageEvent,
    is_action,
)
from jupyter_convo.events.sink import LogSink
from jupyter_convo.testing import ScriptedLLM, error, llm_config_for, reply, tool_call

pytestmark = pytest.mark.integration

S = AgentState
TIMEOUT = 30.0  # a bound that fails loudly; nothing here should come near it


class Agent:
    """One controller with its own log, cassette, workspace and tools, all real."""

    def __init__(self, directory: Path, llm: ScriptedLLM, **settings: Any) -> None:
        llm_options = settings.pop("llm_options", {})
        self.secrets = SecretRegistry()
        self.directory = directory
        self.settings = AgentSettings(llm=llm_config_for(llm, **llm_options), **settings)
        self.workspace = Workspace(directory / "workspace")
        self.log = EventLog(directory / "events.jsonl", secrets=self.secrets)
        self.cassette = Cassette(directory / "cassette.jsonl", secrets=self.secrets)
        self.llm = LLMClient(self.settings.llm, cassette=self.cassette, secrets=self.secrets)
        self.controller = AgentController(
            events=LogSink(self.log),
            llm=self.llm,
            tools=build_tools(self.workspace, self.settings),
            settings=self.settings,
            workspace=self.workspace,
        )

    async def close(self) -> None:
        await self.controller.close()
        await self.llm.close()
        self.log.close()

    def events(self, kind: str | None = None) -> list[Event]:
        return [e for e in self.log.read() if kind is None or e.kind == kind]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.log.read()]

    def states(self) -> list[str]:
        return [e.state.value for e in self.log.read() if isinstance(e, AgentStateEvent)]

    def errors(self) -> list[str]:
        return [e.code for e in self.log.read() if isinstance(e, ErrorEvent)]

    async def wait_for_event(self, predicate: Callable[[Event], bool]) -> Event:
        """The first logged event matching ``predicate``, waiting on the log for it."""
        after = -1
        while True:
            events = await self.log.wait(after, timeout=TIMEOUT)
            if not events:
                pytest.fail(f"no matching event within {TIMEOUT}s; log kinds: {self.kinds()}")
            for event in events:
                if predicate(event):
                    return event
            after = events[-1].id

    async def settle(self, *states: AgentState) -> None:
        """Wait for one of ``states`` and for the loop to end."""
        await self.controller.wait_for_state(*states, timeout=TIMEOUT)
        await self.controller.join(timeout=TIMEOUT)


@pytest.fixture
async def make_agent(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> AsyncIterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def make(llm: ScriptedLLM | None = None, name: str = "conv", **settings: Any) -> Agent:
        agent = Agent(tmp_path / name, llm or scripted_llm, **settings)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        if not agent.log.closed:
            await agent.close()


def assert_causes_linked(events: list[Event]) -> None:
    """Each observation answers the action just before it, by id and tool call id."""
    by_id = {e.id: e for e in events}
    for event in events:
        if event.kind in OBSERVATION_KINDS:
            action = by_id[event.cause] if event.cause is not None else None
            assert isinstance(action, ActionBase), f"observation {event.id} has no action"
            assert event.tool_call_id == action.tool_call_id  # type: ignore[union-attr]
            assert event.id > action.id


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_a_full_run_logs_every_step_in_order(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    plot = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [2, 4, 8])\n"
        "plt.title('revenue')\n"
        "plt.show()\n"
        "print('plotted')"
    )
    scripted_llm.add_script(
        [
            tool_call(
                "terminal",
                {
                    "command": "printf 'a,b\\n1,2\\n' > data.csv && wc -l data.csv",
                    "security_risk": "low",
                },
                content="Let me create the data first.",
            ),
            tool_call("python", {"code": plot, "security_risk": "low"}),
            tool_call(
                "file_editor",
                {
                    "command": "create",
                    "path": "notes.md",
                    "file_text": "# Notes\n",
                    "security_risk": "low",
                },
            ),
            tool_call("finish", {"message": "Data, plot and notes are ready."}),
        ]
    )
    agent = make_agent()
    await agent.controller.start("Make some data and plot it")
    await agent.settle(S.FINISHED)

    assert agent.kinds() == [
        "agent_state",
        "message",
        "agent_state",
        "llm_call",
        "command",
        "command_output",
        "llm_call",
        "python",
        "python_output",
        "llm_call",
        "file_edit",
        "file_edit_result",
        "llm_call",
        "finish",
        "agent_state",
    ]
    assert agent.states() == ["loading", "running", "finished"]
    events = agent.events()
    assert_causes_linked(events)
    command, output = agent.events("command")[0], agent.events("command_output")[0]
    assert command.thought == "Let me create the data first."  # type: ignore[union-attr]
    assert output.exit_code == 0 and "2 data.csv" in output.output  # type: ignore[union-attr]
    python_output = agent.events("python_output")[0]
    bundles = python_output.display_data  # type: ignore[union-attr]
    assert any("image/png" in bundle for bundle in bundles), bundles
    assert "plotted" in python_output.stdout  # type: ignore[union-attr]
    assert (agent.workspace.root / "notes.md").read_text() == "# Notes\n"
    assert agent.events("finish")[0].message == "Data, plot and notes are ready."  # type: ignore[union-attr]

    # Every LLM call is in the cassette and counted in the metrics.
    assert len(agent.cassette.entries()) == 4 == agent.controller.metrics.llm_calls
    assert agent.controller.metrics.prompt_tokens > 0
    # The LLM saw the plot as a note and the earlier results as tool messages.
    last = scripted_llm.requests[-1]
    assert last["messages"][0]["role"] == "system"
    results = tool_messages(last)
    assert "[exit code: 0" in results[0]
    assert "[image/png output shown to the user]" in results[1]


async def test_confirmation_rejection_is_recorded_and_the_agent_goes_on(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "rm data.csv", "security_risk": "high"}),
            tool_call("terminal", {"command": "echo kept; ls", "security_risk": "low"}),
            tool_call("terminal", {"command": "echo confirmed-run"}),  # unknown risk
            reply("All done."),
        ]
    )
    agent = make_agent(confirmation_mode=True)
    (agent.workspace.root / "data.csv").write_text("a\n")
    await agent.controller.start("Clean up")
    await agent.settle(S.AWAITING_USER_CONFIRMATION)
    risky = agent.events("command")[0]
    assert risky.confirmation == "awaiting"  # type: ignore[union-attr]
    assert agent.controller.awaiting_action_id == risky.id
    with pytest.raises(ValueError, match=f"action {risky.id} is"):
        await agent.controller.handle_input(
            ConfirmationInput(action_id=risky.id + 100, confirmed=True)
        )

    answer = await agent.controller.handle_input(
        ConfirmationInput(action_id=risky.id, confirmed=False, reason="keep my data")
    )
    assert isinstance(answer, ConfirmationEvent) and answer.cause == risky.id
    # The low-risk command runs without asking; the unknown-risk one waits again.
    await agent.settle(S.AWAITING_USER_CONFIRMATION)
    assert (agent.workspace.root / "data.csv").exists()
    commands = agent.events("command")
    assert [c.confirmation for c in commands] == ["awaiting", "none", "awaiting"]  # type: ignore[union-attr]
    second_request = scripted_llm.requests[1]
    assert "rejected" in tool_messages(second_request)[0]
    assert "keep my data" in tool_messages(second_request)[0]

    await agent.controller.handle_input(ConfirmationInput(action_id=commands[2].id, confirmed=True))
    await agent.settle(S.AWAITING_USER_INPUT)
    outputs = agent.events("command_output")
    assert [o.cause for o in outputs] == [commands[1].id, commands[2].id]
    assert "confirmed-run" in outputs[1].output  # type: ignore[union-attr]
    assert agent.events("message")[-1].text == "All done."  # type: ignore[union-attr]
    assert_causes_linked(agent.events())


async def test_a_message_while_awaiting_confirmation_rejects_the_action(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [tool_call("terminal", {"command": "rm -rf out", "security_risk": "high"}), reply("OK.")]
    )
    agent = make_agent(confirmation_mode=True)
    await agent.controller.start("Remove out")
    await agent.settle(S.AWAITING_USER_CONFIRMATION)
    await agent.controller.handle_input(MessageInput(text="No, keep it"))
    await agent.settle(S.AWAITING_USER_INPUT)
    rejection = agent.events("confirmation")[0]
    assert isinstance(rejection, ConfirmationEvent) and not rejection.confirmed
    assert agent.events("command_output") == []
    messages = scripted_llm.requests[-1]["messages"]
    assert [m["role"] for m in messages[-3:]] == ["assistant", "tool", "user"]


async def test_llm_authentication_error(make_agent: Callable[..., Agent]) -> None:
    guarded = ScriptedLLM(require_api_key="sk-the-right-key-1234")
    guarded.add_script([reply("never")])
    with guarded.serve():
        agent = make_agent(guarded, llm_options={"api_key": "sk-a-wrong-key-5678"})
        await agent.controller.start("hello")
        await agent.settle(S.ERROR)
    (failure,) = agent.events("error")
    assert isinstance(failure, ErrorEvent) and failure.code == "LLM_AUTHENTICATION"
    assert "Traceback" not in failure.message
    assert "sk-a-wrong-key-5678" not in (agent.directory / "events.jsonl").read_text()


async def test_rate_limited_forever(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([error(429, "slow down", times=None), reply("never")])
    agent = make_agent()
    await agent.controller.start("hello")
    await agent.settle(S.RATE_LIMITED)
    assert agent.errors() == ["LLM_RATE_LIMITED"]
    assert agent.states()[-1] == "rate_limited"


async def test_rate_limited_once_then_the_agent_continues(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([error(429, "slow down", times=1), reply("Hello there.")])
    agent = make_agent()
    await agent.controller.start("hello")
    await agent.settle(S.AWAITING_USER_INPUT)
    assert agent.errors() == []
    assert agent.events("message")[-1].text == "Hello there."  # type: ignore[union-attr]
    entries = agent.cassette.entries()
    assert [(e.error is not None, e.final) for e in entries] == [(True, False), (False, True)]


async def test_invalid_tool_calls_are_told_to_the_llm(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"cmd": "ls"}),
            tool_call("spreadsheet", {"open": "a.xlsx"}),
            tool_call("terminal", "{not json"),
            reply("Sorry, fixed."),
        ]
    )
    agent = make_agent()
    await agent.controller.start("list files")
    await agent.settle(S.AWAITING_USER_INPUT)
    assert agent.errors() == [AGENT_TOOL_ARGUMENTS] * 3
    results = tool_messages(scripted_llm.requests[-1])
    assert "command" in results[0]
    assert "Unknown tool 'spreadsheet'" in results[1]
    assert "not valid JSON" in results[2]


async def test_max_iterations_then_a_message_grants_more(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("think", {"thought": "step one"}),
            tool_call("think", {"thought": "step two"}),
            tool_call("think", {"thought": "step three"}),
            reply("Done thinking."),
        ]
    )
    agent = make_agent(max_iterations=2)
    await agent.controller.start("think hard")
    await agent.settle(S.ERROR)
    assert agent.errors() == [AGENT_MAX_ITERATIONS]
    assert len(scripted_llm.requests) == 2
    await agent.controller.handle_input(MessageInput(text="go on"))
    await agent.settle(S.AWAITING_USER_INPUT)
    assert len(scripted_llm.requests) == 4
    assert agent.controller.metrics.iterations == 2
    assert agent.controller.metrics.llm_calls == 4


async def test_budget_exceeded(make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script(
        [
            tool_call("think", {"thought": "a"}, prompt_tokens=100, completion_tokens=0),
            tool_call("think", {"thought": "b"}, prompt_tokens=100, completion_tokens=0),
            tool_call("think", {"thought": "c"}, prompt_tokens=100, completion_tokens=0),
        ]
    )
    agent = make_agent(max_budget_per_task=0.15, llm_options={"input_cost_per_token": 0.001})
    await agent.controller.start("spend")
    await agent.settle(S.ERROR)
    assert agent.errors() == [AGENT_BUDGET_EXCEEDED]
    assert [e.cost for e in agent.events("llm_call")] == pytest.approx([0.1, 0.1])  # type: ignore[union-attr]
    assert agent.controller.metrics.cost == pytest.approx(0.2)


async def test_stuck_detection(make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM) -> None:
    same = {"command": "cat missing.csv", "security_risk": "low"}
    scripted_llm.add_script([tool_call("terminal", same) for _ in range(5)])
    agent = make_agent()
    await agent.controller.start("read the file")
    await agent.settle(S.ERROR)
    assert agent.errors() == [AGENT_STUCK]
    assert len(agent.events("command_output")) == 3
    assert len(scripted_llm.requests) == 3


async def test_pause_lets_the_step_finish_then_resume(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo one", "security_risk": "low"}, gate="answer"),
            reply("Resumed and done."),
        ]
    )
    agent = make_agent()
    await agent.controller.start("count")
    await asyncio.to_thread(scripted_llm.wait_for_requests, 1, TIMEOUT)
    paused = await agent.controller.handle_input(AgentStateInput(state="paused"))
    assert isinstance(paused, AgentStateEvent) and paused.state is S.PAUSED
    scripted_llm.open_gate("answer")
    await agent.controller.join(timeout=TIMEOUT)
    # The step in flight completed; no new step started while paused.
    assert agent.controller.state is S.PAUSED
    assert "one" in agent.events("command_output")[0].output  # type: ignore[union-attr]
    assert len(scripted_llm.requests) == 1
    await agent.controller.handle_input(AgentStateInput(state="running"))
    await agent.settle(S.AWAITING_USER_INPUT)
    assert agent.states() == ["loading", "running", "paused", "running", "awaiting_user_input"]


async def test_a_message_sent_during_a_step_is_answered_before_waiting(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("Which file?", gate="answer"), reply("Got it: b.csv as well.")])
    agent = make_agent()
    await agent.controller.start("summarize a.csv")
    await asyncio.to_thread(scripted_llm.wait_for_requests, 1, TIMEOUT)
    await agent.controller.handle_input(MessageInput(text="and b.csv too"))
    scripted_llm.open_gate("answer")
    await agent.settle(S.AWAITING_USER_INPUT)
    assert agent.states() == ["loading", "running", "awaiting_user_input"]
    texts = [(e.source, e.text) for e in agent.events("message")]  # type: ignore[union-attr]
    assert texts == [
        ("user", "summarize a.csv"),
        ("user", "and b.csv too"),
        ("agent", "Which file?"),
        ("agent", "Got it: b.csv as well."),
    ]
    roles = [m["role"] for m in scripted_llm.requests[-1]["messages"]]
    assert roles == ["system", "user", "user", "assistant"]


async def test_refused_state_changes_warn_and_keep_the_state(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("Hi.")])
    agent = make_agent()
    await agent.controller.start("hello")
    await agent.settle(S.AWAITING_USER_INPUT)
    event = await agent.controller.handle_input(AgentStateInput(state="paused"))
    assert isinstance(event, AgentStateEvent) and event.state is S.AWAITING_USER_INPUT
    assert agent.controller.state is S.AWAITING_USER_INPUT
    with pytest.raises(ValueError, match="no action is awaiting confirmation"):
        await agent.controller.handle_input(ConfirmationInput(action_id=0, confirmed=True))


async def test_stop_interrupts_a_long_command_and_the_shell_stays_usable(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call(
                "terminal",
                {"command": "echo started > started.fifo && sleep 30", "security_risk": "low"},
            ),
            tool_call("terminal", {"command": "echo alive", "security_risk": "low"}),
            reply("Still here."),
        ]
    )
    agent = make_agent()
    fifo = agent.workspace.root / "started.fifo"
    os.mkfifo(fifo)
    await agent.controller.start("wait a while")
    try:  # the command writes to the FIFO just before it sleeps: then it surely runs
        started = await asyncio.wait_for(asyncio.to_thread(fifo.read_text), TIMEOUT)
    finally:  # never leave the reader thread blocked
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert started == "started\n"
    await asyncio.wait_for(agent.controller.stop(), TIMEOUT)
    assert agent.controller.state is S.STOPPED
    assert agent.states()[-1] == "stopped"

    await agent.controller.handle_input(MessageInput(text="are you there?"))
    await agent.settle(S.AWAITING_USER_INPUT)
    outputs = agent.events("command_output")
    assert "alive" in outputs[-1].output  # type: ignore[union-attr]
    first_result = tool_messages(scripted_llm.requests[1])[0]
    assert first_result == INTERRUPTED_RESULT or "interrupt" in first_result.lower()


async def test_stop_interrupts_python_and_the_next_cell_runs(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    slow = "import time\nopen('started.fifo', 'w').write('started\\n')\ntime.sleep(30)"
    scripted_llm.add_script(
        [
            tool_call("python", {"code": slow, "security_risk": "low"}),
            tool_call("python", {"code": "print(6 * 7)", "security_risk": "low"}),
            reply("Back."),
        ]
    )
    agent = make_agent()
    fifo = agent.workspace.root / "started.fifo"
    os.mkfifo(fifo)
    await agent.controller.start("sleep in python")
    try:
        started = await asyncio.wait_for(asyncio.to_thread(fifo.read_text), TIMEOUT)
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert started == "started\n"
    await asyncio.wait_for(agent.controller.stop(), TIMEOUT)
    assert agent.controller.state is S.STOPPED

    await agent.controller.handle_input(MessageInput(text="again"))
    await agent.settle(S.AWAITING_USER_INPUT)
    (output,) = agent.events("python_output")
    assert output.stdout == "42\n"  # type: ignore[union-attr]


async def test_restart_continues_from_the_log(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo first-run", "security_risk": "low"}),
            reply("First part done."),
            reply("Second part done."),
        ]
    )
    first = make_agent(name="same")
    await first.controller.start("Two-part job")
    await first.settle(S.AWAITING_USER_INPUT)
    await first.close()

    second = make_agent(name="same")
    await second.controller.start()
    assert second.controller.state is S.AWAITING_USER_INPUT
    assert second.controller.metrics.llm_calls == 2
    await second.controller.handle_input(MessageInput(text="Now part two"))
    await second.settle(S.AWAITING_USER_INPUT)

    assert len(second.events("command")) == 1  # nothing was run again
    request = scripted_llm.requests[-1]
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert request["messages"][1]["content"] == "Two-part job"
    assert "first-run" in request["messages"][3]["content"]
    assert request["messages"][4]["content"] == "First part done."
    assert second.controller.metrics.llm_calls == 3
    assert len(second.cassette.entries()) == 3


async def test_restart_while_awaiting_confirmation_waits_again(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [tool_call("terminal", {"command": "echo approved", "security_risk": "high"}), reply("Ok.")]
    )
    first = make_agent(name="same", confirmation_mode=True)
    await first.controller.start("Risky job")
    await first.settle(S.AWAITING_USER_CONFIRMATION)
    action_id = first.controller.awaiting_action_id
    await first.close()

    second = make_agent(name="same", confirmation_mode=True)
    await second.controller.start()
    assert second.controller.state is S.AWAITING_USER_CONFIRMATION
    assert second.controller.awaiting_action_id == action_id
    assert action_id is not None
    await second.controller.handle_input(ConfirmationInput(action_id=action_id, confirmed=True))
    await second.settle(S.AWAITING_USER_INPUT)
    (output,) = second.events("command_output")
    assert output.cause == action_id and "approved" in output.output  # type: ignore[union-attr]


async def test_restart_after_a_kill_mid_step_gives_the_action_a_result(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    # Step 0 was answered by the killed runtime; the request after the restart is step 1.
    scripted_llm.add_script([reply("(answered before the kill)"), reply("Picking up again.")])
    # A log as a killed runtime leaves it: an action logged, its observation never written.
    log = EventLog(tmp_path / "killed" / "events.jsonl")
    log.append(AgentStateEvent(state=S.LOADING))
    log.append(MessageEvent(source="user", text="long job"))
    log.append(AgentStateEvent(state=S.RUNNING))
    log.append(LLMCallEvent(model="scripted-model", prompt_tokens=5, completion_tokens=5))
    log.append(CommandEvent(command="sleep 100", tool_call_id="call_killed", security_risk="low"))
    log.close()

    agent = make_agent(name="killed")
    await agent.controller.start()
    assert agent.controller.state is S.AWAITING_USER_INPUT
    await agent.controller.handle_input(MessageInput(text="continue"))
    await agent.settle(S.AWAITING_USER_INPUT)
    messages = scripted_llm.requests[-1]["messages"]
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "call_killed",
        "content": INTERRUPTED_RESULT,
    }
    assert not any(is_action(e) and e.id > 4 for e in agent.events())
    assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"])["command"] == (
        "sleep 100"
    )


async def test_the_analyzer_makes_an_action_the_llm_called_low_wait(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "rm -rf data", "security_risk": "low"}),
            tool_call("terminal", {"command": "ls", "security_risk": "low"}),
            reply("Done."),
        ]
    )
    agent = make_agent(confirmation_mode="risky")
    (agent.workspace.root / "data").mkdir()
    await agent.controller.start("Tidy up")
    await agent.settle(S.AWAITING_USER_CONFIRMATION)
    (action,) = agent.events("command")
    assert isinstance(action, CommandEvent)
    assert (action.security_risk, action.llm_risk) == ("high", "low")
    assert action.risk_reason == "deletes files recursively or by force"
    assert action.confirmation == "awaiting"
    assert (agent.workspace.root / "data").is_dir()  # nothing ran

    await agent.controller.handle_input(ConfirmationInput(action_id=action.id, confirmed=False))
    await agent.settle(S.AWAITING_USER_INPUT)
    second = agent.events("command")[1]
    assert isinstance(second, CommandEvent)
    assert (second.security_risk, second.risk_reason, second.confirmation) == ("low", "", "none")
    # The LLM is shown its own rating back, not the analyzer's.
    call = scripted_llm.requests[1]["messages"][2]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])["security_risk"] == "low"


async def test_confirm_always_asks_before_every_tool_action(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("think", {"thought": "plan"}),
            tool_call("terminal", {"command": "echo safe", "security_risk": "low"}),
            reply("Done."),
        ]
    )
    agent = make_agent(confirmation_mode="always")
    await agent.controller.start("Say hi")
    await agent.settle(S.AWAITING_USER_CONFIRMATION)
    (command,) = agent.events("command")
    assert command.security_risk == "low" and command.confirmation == "awaiting"  # type: ignore[union-attr]
    assert agent.events("think")[0].confirmation == "none"  # type: ignore[union-attr]
    await agent.controller.handle_input(ConfirmationInput(action_id=command.id, confirmed=True))
    await agent.settle(S.AWAITING_USER_INPUT)
    assert "safe" in agent.events("command_output")[0].output  # type: ignore[union-attr]


async def test_the_llm_analyzer_raises_a_risk_the_rules_missed(
    make_agent: Callable[..., Agent], scripted_llm: ScriptedLLM
) -> None:
    # The analyzer's request shows the action as its user message: it gets its own script.
    scripted_llm.add_script(
        [tool_call("terminal", {"command": "make deploy", "security_risk": "low"}), reply("Ok.")]
    )
    scripted_llm.add_script(
        [reply('{"risk": "high", "reason": "deploys to production"}')], match="make deploy"
    )
    agent = make_agent(confirmation_mode="risky", security={"analyzer": "llm"})
    await agent.controller.start("Ship it")
    await agent.settle(S.AWAITING_USER_CONFIRMATION)
    (action,) = agent.events("command")
    assert action.security_risk == "high"  # type: ignore[union-attr]
    assert action.risk_reason == "LLM analyzer: deploys to production"  # type: ignore[union-attr]
    analyzer_request = scripted_llm.requests[1]
    assert "make deploy" in analyzer_request["messages"][1]["content"]
    assert "security_risk" not in analyzer_request["messages"][1]["content"]
    assert "tools" not in analyzer_request or not analyzer_request["tools"]
    # The analyzer's exchange is not in the conversation's cassette (replay stays exact).
    assert len(agent.cassette.entries()) == 1
