"""NestedConversationManager with real runtime subprocesses and the scripted LLM.

Every wait is on an event (start-task updates, the event stream) with a bounded timeout;
every runtime a test starts is stopped by the ``make_manager`` fixture, which fails the
test if one was left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from signal_helpers import inherited_signals, process_signal_state

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    AgentState,
    AgentStateEvent,
    ConversationStatus,
    ErrorEvent,
    Event,
    StatusEvent,
    TitleEvent,
)
from jupyter_convo.manager.base import ConversationNotFound, ConversationNotRunning
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.metadata import RUNTIME_DIED, TOO_MANY_CONVERSATIONS
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.owner import DataDirInUse
from jupyter_convo.manager.runtime_client import RuntimeClient
from jupyter_convo.manager.sandboxes import make_sandbox
from jupyter_convo.manager.sandboxes.process import ProcessSandbox, pid_alive
from jupyter_convo.runtime.auth import SESSION_KEY_ENV
from jupyter_convo.runtime.models import CreateConversationRequest, InitialMessage
from jupyter_convo.store.conversations import StartTask, StartTaskStatus
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply
from jupyter_convo.testing.collector import EventCollector as Collector
from jupyter_convo.testing.collector import agent_says

pytestmark = pytest.mark.integration

WAIT = 30.0  # upper bound of every wait; reaching it fails the test
ORDERED_STATUSES = [
    StartTaskStatus.WORKING,
    StartTaskStatus.WAITING_FOR_SANDBOX,
    StartTaskStatus.PREPARING_WORKSPACE,
    StartTaskStatus.STARTING_CONVERSATION,
    StartTaskStatus.READY,
]

MakeManager = Callable[..., Awaitable[NestedConversationManager]]


# --- helpers -----------------------------------------------------------------------------


def awaiting_input(event: Event) -> bool:
    return isinstance(event, AgentStateEvent) and event.state.value == "awaiting_user_input"


def assert_in_order(events: list[Event]) -> None:
    """Logged events arrive once each, with consecutive ids."""
    ids = [event.id for event in events if event.id >= 0]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids


async def start_updates(manager: NestedConversationManager, task: StartTask) -> list[StartTask]:
    """Every state of the start task, from the one it is in now."""
    updates = manager.start_task_updates(task.id)
    # The first step runs here, before the background start gets a turn: nothing is missed.
    first = await anext(updates)

    async def rest() -> list[StartTask]:
        return [first] + [update async for update in updates]

    return await asyncio.wait_for(rest(), WAIT)


def read_log(data_dir: Path, conversation_id: str) -> list[Event]:
    path = data_dir / "conversations" / conversation_id / "events.jsonl"
    with EventLog(path, read_only=True) as event_log:
        return event_log.read()


def runtime_record(data_dir: Path, conversation_id: str) -> dict[str, Any]:
    path = data_dir / "conversations" / conversation_id / "runtime.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def kill_leftover_runtimes(data_dir: Path) -> list[str]:
    """Kill runtimes still recorded under ``data_dir``; return what was left."""
    leftovers = []
    for record in data_dir.glob("conversations/*/runtime.json"):
        data = json.loads(record.read_text())
        if pid_alive(data["pid"]):
            leftovers.append(f"{record.parent.name} (pid {data['pid']})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(data["pgid"], signal.SIGKILL)
    return leftovers


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def make_manager(data_dir: Path) -> AsyncIterator[MakeManager]:
    made: list[NestedConversationManager] = []

    async def make(**overrides: Any) -> NestedConversationManager:
        # Names that are not ManagerConfig's are the process sandbox's traits.
        values: dict[str, Any] = {"data_dir": data_dir}
        traits: dict[str, Any] = {}
        for name, value in overrides.items():
            (values if name in ManagerConfig.model_fields else traits)[name] = value
        config = ManagerConfig(**values)
        manager = NestedConversationManager(config, sandbox=make_sandbox(config, **traits))
        await manager.start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.config.keep_runtimes_on_shutdown = False
        await manager.shutdown()
    leftovers = kill_leftover_runtimes(data_dir)
    assert not leftovers, f"runtimes left running: {leftovers}"


@pytest.fixture
def settings(scripted_llm: ScriptedLLM) -> AgentSettings:
    return AgentSettings(llm=llm_config_for(scripted_llm))


async def create_ready(
    manager: NestedConversationManager,
    settings: AgentSettings,
    text: str,
    *,
    user_id: str = "ada",
) -> str:
    task = await manager.create_conversation(
        user_id=user_id, settings=settings, initial_message=InitialMessage(text=text)
    )
    updates = await start_updates(manager, task)
    assert updates[-1].status is StartTaskStatus.READY, updates[-1].detail
    assert task.conversation_id is not None
    return task.conversation_id


def loading_reasons(events: list[Event]) -> list[str]:
    """Why the agent loaded, each time it did ("starting" or "resuming")."""
    return [
        event.reason
        for event in events
        if isinstance(event, AgentStateEvent) and event.state.value == "loading"
    ]


# --- tests -------------------------------------------------------------------------------


async def test_full_lifecycle(
    make_manager: MakeManager,
    settings: AgentSettings,
    scripted_llm: ScriptedLLM,
    data_dir: Path,
) -> None:
    scripted_llm.add_script([reply("first answer"), reply("second answer"), reply("third")])
    manager = await make_manager()
    task = await manager.create_conversation(
        user_id="ada",
        settings=settings,
        initial_message=InitialMessage(text="Count the rows of sales.csv\nand more"),
    )
    cid = task.conversation_id
    assert cid is not None
    assert task.status is StartTaskStatus.WORKING
    updates = await start_updates(manager, task)
    assert [update.status for update in updates] == ORDERED_STATUSES
    meta = manager.metadata(cid, "ada")
    assert meta.title == "Count the rows of sales.csv"
    with pytest.raises(ConversationNotFound):
        manager.metadata(cid, "bob")
    assert await manager.get_running_agent_loops(user_id="ada") == {cid}
    assert await manager.get_running_agent_loops(user_id="bob") == set()

    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(agent_says("first answer"), "the first answer")
    await stream.wait_for(awaiting_input, "awaiting_user_input")
    # A brand-new conversation starts, it does not resume (the runtime's own status
    # events come first in its log).
    assert loading_reasons(stream.events) == ["starting"]
    await manager.send_event_to_conversation(cid, MessageInput(text="and now?"))
    await stream.wait_for(agent_says("second answer"), "the second answer")

    meta = manager.metadata(cid, "ada")
    assert meta.status is ConversationStatus.RUNNING
    assert meta.prompt_tokens > 0 and meta.completion_tokens > 0
    assert meta.model == settings.llm.model
    pid = runtime_record(data_dir, cid)["pid"]
    assert pid_alive(pid)

    await manager.close_session(cid)
    assert not pid_alive(pid)
    assert not (data_dir / "conversations" / cid / "runtime.json").exists()
    assert manager.metadata(cid, "ada").status is ConversationStatus.STOPPED
    assert not await manager.is_agent_loop_running(cid)
    await stream.wait_for(
        lambda e: isinstance(e, StatusEvent) and e.status == "STOPPED", "the STOPPED status"
    )
    with pytest.raises(ConversationNotRunning):
        await manager.send_event_to_conversation(cid, MessageInput(text="hello?"))
    # While stopped, the workspace is served from disk.
    (data_dir / "conversations" / cid / "workspace" / "notes.txt").write_text("kept")
    assert await manager.list_files(cid) == ["notes.txt"]
    assert await manager.select_file(cid, "notes.txt") == "kept"
    last_before_restart = manager.metadata(cid, "ada").last_event_id

    info = await manager.maybe_start_agent_loop(cid, user_id="ada", settings=settings)
    assert info.status == ConversationStatus.RUNNING.value
    assert info.runtime_id != str(pid)
    await manager.send_event_to_conversation(cid, MessageInput(text="once more"))
    # The third scripted answer is only reached with the history rebuilt from the log.
    answer = await stream.wait_for(agent_says("third"), "the answer after the restart")
    assert answer.id > last_before_restart
    assert loading_reasons(stream.events) == ["starting", "resuming"]
    assert_in_order(stream.events)
    # The runtime may log more (its next agent state) after that answer: the stream must
    # deliver everything the log holds, in the same order.
    logged_ids = [e.id for e in read_log(data_dir, cid)]
    await stream.wait_for(lambda e: e.id == logged_ids[-1], "every event of the log")
    assert [e.id for e in stream.logged()][: len(logged_ids)] == logged_ids

    await manager.delete_conversation(cid)
    await stream.wait_ended()
    assert isinstance(stream.error, ConversationNotFound), "watchers learn it was deleted"
    assert not (data_dir / "conversations" / cid).exists()
    assert manager.store.get(cid) is None
    assert manager.store.count_start_tasks(conversation_id=cid) == 0
    assert not await manager.is_agent_loop_running(cid)


async def test_subscribers_get_identical_ordered_streams(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("one"), reply("two")])
    manager = await make_manager()
    task = await manager.create_conversation(
        user_id="ada", settings=settings, initial_message=InitialMessage(text="go")
    )
    cid = task.conversation_id
    assert cid is not None
    first = Collector(manager.subscribe(cid))
    second = Collector(manager.subscribe(cid))
    await first.wait_for(agent_says("one"), "answer one")
    await first.wait_for(awaiting_input, "awaiting input")
    middle = first.logged()[len(first.logged()) // 2].id
    late = Collector(manager.subscribe(cid, after_id=middle))
    await manager.send_event_to_conversation(cid, MessageInput(text="again"))
    for collector in (first, second, late):
        await collector.wait_for(agent_says("two"), "answer two")
        await collector.wait_for(lambda e: awaiting_input(e) and e.id > middle + 3, "idle")
        assert_in_order(collector.events)

    def dumped(events: list[Event]) -> list[str]:
        return [event.model_dump_json() for event in events]

    assert first.logged()[0].id == 0
    assert dumped(first.logged()) == dumped(second.logged())
    assert dumped(late.logged()) == dumped([e for e in first.logged() if e.id > middle])
    for collector in (first, second, late):
        await collector.close()
    await manager.close_session(cid)


async def test_limit_stops_the_oldest_and_tells_its_subscribers(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("done")])
    manager = await make_manager(max_concurrent_conversations=1)
    oldest = await create_ready(manager, settings, "first task")
    stream = Collector(manager.subscribe(oldest))
    await stream.wait_for(awaiting_input, "the first conversation idle")
    pid = runtime_record(manager.config.data_dir, oldest)["pid"]

    newest = await create_ready(manager, settings, "second task")

    notice = await stream.wait_for(
        lambda e: isinstance(e, ErrorEvent) and e.code == TOO_MANY_CONVERSATIONS,
        "the too-many-conversations error",
    )
    assert "Too many conversations" in notice.message
    assert not pid_alive(pid)
    meta = manager.metadata(oldest, "ada")
    assert meta.status is ConversationStatus.STOPPED
    assert meta.error is not None and meta.error.startswith(TOO_MANY_CONVERSATIONS)
    assert await manager.get_running_agent_loops(user_id="ada") == {newest}
    # Other users have their own limit.
    other = await create_ready(manager, settings, "third task", user_id="bob")
    assert await manager.get_running_agent_loops() == {newest, other}
    await stream.close()


async def test_runtimes_are_found_again_after_a_server_restart(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("before"), reply("after")])
    first = await make_manager()
    cid = await create_ready(first, settings, "survive a restart")
    stream = Collector(first.subscribe(cid))
    await stream.wait_for(awaiting_input, "idle before the restart")
    pid = runtime_record(first.config.data_dir, cid)["pid"]
    await first.shutdown()  # keeps its runtimes (the default)
    await stream.wait_ended()
    assert pid_alive(pid)

    second = await make_manager()
    assert await second.get_running_agent_loops() == {cid}
    (info,) = await second.get_agent_loop_info(user_id="ada")
    assert info.runtime_id == str(pid)
    assert second.metadata(cid, "ada").status is ConversationStatus.RUNNING
    resumed = Collector(second.subscribe(cid, after_id=stream.logged()[-1].id))
    await second.send_event_to_conversation(cid, MessageInput(text="still there?"))
    await resumed.wait_for(agent_says("after"), "the answer through the new manager")
    assert resumed.logged()[0].id == stream.logged()[-1].id + 1
    assert_in_order(resumed.events)
    # The new manager also watches the runtime it did not start.
    os.killpg(runtime_record(second.config.data_dir, cid)["pgid"], signal.SIGKILL)
    await resumed.wait_for(
        lambda e: isinstance(e, ErrorEvent) and e.code == RUNTIME_DIED, "RUNTIME_DIED"
    )
    assert second.metadata(cid, "ada").status is ConversationStatus.ERROR
    await resumed.close()


async def test_killed_runtime_turns_the_conversation_to_error(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("working")])
    manager = await make_manager()
    cid = await create_ready(manager, settings, "about to die")
    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(awaiting_input, "idle")
    record = runtime_record(manager.config.data_dir, cid)
    before = read_log(manager.config.data_dir, cid)

    os.killpg(record["pgid"], signal.SIGKILL)

    died = await stream.wait_for(
        lambda e: isinstance(e, ErrorEvent) and e.code == RUNTIME_DIED, "RUNTIME_DIED"
    )
    assert "killed by signal 9" in died.message
    # and the agent loop is gone: its state is logged as error, not left "running"
    gone = await stream.wait_for(
        lambda e: isinstance(e, AgentStateEvent) and e.id > died.id, "the agent state after it"
    )
    assert isinstance(gone, AgentStateEvent) and gone.state is AgentState.ERROR
    after = read_log(manager.config.data_dir, cid)
    assert [e.model_dump() for e in after[: len(before)]] == [e.model_dump() for e in before]
    assert died.id == before[-1].id + 1 and after[-1].id == gone.id == died.id + 1
    meta = manager.metadata(cid, "ada")
    assert meta.status is ConversationStatus.ERROR and meta.agent_state == "error"
    assert meta.error is not None and meta.error.startswith(RUNTIME_DIED)
    assert meta.last_event_id == gone.id
    assert not await manager.is_agent_loop_running(cid)
    assert not (manager.config.data_dir / "conversations" / cid / "runtime.json").exists()
    await stream.close()


def ready_status_ids(data_dir: Path, conversation_id: str) -> list[int]:
    """Ids of the runtime's READY status events in the log."""
    return [
        e.id
        for e in read_log(data_dir, conversation_id)
        if isinstance(e, StatusEvent) and e.status == "READY"
    ]


async def test_start_and_restart_return_with_the_status_the_runtime_reached(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    """When a start returns, the metadata has folded the runtime's start (its READY): a
    STARTING_RUNTIME relayed after the return used to set the status back to STARTING."""
    scripted_llm.add_script([reply("working"), reply("again")])
    manager = await make_manager()
    data_dir = manager.config.data_dir
    cid = await create_ready(manager, settings, "restart me")
    meta = manager.metadata(cid, "ada")  # no await since READY: nothing relayed meanwhile
    assert meta.status is ConversationStatus.RUNNING
    assert meta.last_event_id >= ready_status_ids(data_dir, cid)[-1]
    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(awaiting_input, "idle")
    os.killpg(runtime_record(data_dir, cid)["pgid"], signal.SIGKILL)
    await stream.wait_for(
        lambda e: isinstance(e, ErrorEvent) and e.code == RUNTIME_DIED, "RUNTIME_DIED"
    )
    assert manager.metadata(cid, "ada").status is ConversationStatus.ERROR

    info = await manager.maybe_start_agent_loop(cid, user_id="ada", settings=settings)
    meta = manager.metadata(cid, "ada")
    assert info.status == ConversationStatus.RUNNING.value
    assert meta.status is ConversationStatus.RUNNING and meta.error is None
    assert meta.last_event_id >= ready_status_ids(data_dir, cid)[-1]
    await manager.send_event_to_conversation(cid, MessageInput(text="go on"))
    await stream.wait_for(agent_says("again"), "the answer after the restart")
    assert manager.metadata(cid, "ada").status is ConversationStatus.RUNNING
    await stream.close()


async def test_a_runtime_started_with_signals_ignored_gets_default_signal_handling(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    """A server started in the background inherits ignored signals and a blocked mask:
    the runtimes it starts must not (their shells and kernels would ignore Ctrl-C)."""
    scripted_llm.add_script([reply("hello")])
    manager = await make_manager()
    with inherited_signals():  # the runtime starts now, as under such a server
        cid = await create_ready(manager, settings, "signals")
    runtime = process_signal_state(runtime_record(manager.config.data_dir, cid)["pid"])
    assert runtime.blocked == frozenset()
    assert runtime.ignored <= {signal.SIGPIPE, signal.SIGXFSZ}  # what Python ignores itself
    await manager.close_session(cid)


async def test_start_failure_reports_the_reason(
    make_manager: MakeManager, settings: AgentSettings, tmp_path: Path
) -> None:
    manager = await make_manager(python_executable=str(tmp_path / "no-such-python"))
    task = await manager.create_conversation(user_id="ada", settings=settings)
    updates = await start_updates(manager, task)
    assert updates[-1].status is StartTaskStatus.ERROR
    assert updates[-1].detail is not None and "could not run" in updates[-1].detail
    assert task.conversation_id is not None
    meta = manager.metadata(task.conversation_id, "ada")
    assert meta.status is ConversationStatus.ERROR
    assert meta.error is not None and "no-such-python" in meta.error
    assert not await manager.is_agent_loop_running(task.conversation_id)


async def test_runtime_exiting_before_ready_reports_its_log(
    make_manager: MakeManager, settings: AgentSettings, tmp_path: Path
) -> None:
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'fatal: cannot import the runtime' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    manager = await make_manager(python_executable=str(fake))
    task = await manager.create_conversation(
        user_id="ada", settings=settings, initial_message=InitialMessage(text="x")
    )
    updates = await start_updates(manager, task)
    assert [u.status for u in updates][-1] is StartTaskStatus.ERROR
    detail = updates[-1].detail or ""
    assert "exit code 3" in detail
    assert "fatal: cannot import the runtime" in detail


async def test_title_generated_from_the_first_message_is_published(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("sure")])
    manager = await make_manager()
    task = await manager.create_conversation(user_id="ada", settings=settings)
    cid = task.conversation_id
    assert cid is not None
    stream = Collector(manager.subscribe(cid))
    assert (await start_updates(manager, task))[-1].status is StartTaskStatus.READY
    assert manager.metadata(cid, "ada").title is None
    await manager.send_event_to_conversation(cid, MessageInput(text="summarise the report"))
    title = await stream.wait_for(lambda e: isinstance(e, TitleEvent), "a title event")
    assert isinstance(title, TitleEvent) and title.title == "summarise the report"
    assert manager.metadata(cid, "ada").title == "summarise the report"
    await stream.wait_for(agent_says("sure"), "the answer")
    await stream.close()
    await manager.close_session(cid)


async def test_one_data_dir_has_one_manager_at_a_time(
    make_manager: MakeManager, data_dir: Path
) -> None:
    first = await make_manager()
    second = NestedConversationManager(ManagerConfig(data_dir=data_dir))
    second.owner_details = {"url": "http://second.example/"}
    with pytest.raises(DataDirInUse) as refused:
        await second.start()
    assert f"pid {os.getpid()}" in str(refused.value), refused.value
    await first.shutdown()
    await second.start()  # the owner left: the data dir is free again
    lock = json.loads((data_dir / "owner.lock").read_text())
    assert lock["url"] == "http://second.example/" and lock["pid"] == os.getpid()
    await second.shutdown()


async def test_a_runtime_running_without_its_record_is_stopped_before_a_start(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    """A runtime of the conversation that runs unknown to the manager (its record lost)
    holds the log's lock: a start must not fail on it (it used to, with a 500)."""
    scripted_llm.add_script([reply("first"), reply("second")])
    manager = await make_manager()
    cid = await create_ready(manager, settings, "orphan at start")
    first = Collector(manager.subscribe(cid))
    await first.wait_for(agent_says("first"), "the first answer")
    await first.close()
    await manager.close_session(cid)
    other = ProcessSandbox(manager.config.conversations_root, server_instance_id="elsewhere")
    key = manager.session_key(cid)
    orphan = await other.start(cid, {SESSION_KEY_ENV: key}, timeout=60)
    client = RuntimeClient(orphan.url, key, cid)
    try:
        await client.create_conversation(
            CreateConversationRequest(conversation_id=cid, settings=settings)
        )  # it holds the log's lock now
    finally:
        await client.aclose()
    other.remove_record(cid)
    assert [h.pid for h in await manager.sandbox.find_orphans(cid)] == [orphan.pid]

    info = await manager.maybe_start_agent_loop(
        cid, user_id="ada", settings=settings, initial_message=InitialMessage(text="again")
    )
    assert info.status == ConversationStatus.RUNNING.value
    assert info.runtime_id != str(orphan.pid)
    assert not pid_alive(orphan.pid or 0), "the orphan was stopped"
    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(agent_says("second"), "the answer of the new runtime")
    await stream.close()
