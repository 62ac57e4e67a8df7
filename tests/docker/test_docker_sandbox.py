"""NestedConversationManager over the docker sandbox: real containers, the scripted LLM.

Every wait is on an event (start-task updates, the event stream, the engine's state) with
a bounded timeout. ``make_manager`` removes every container of the test's data directory.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import (
    WAIT,
    Collector,
    MakeManager,
    awaiting_input,
    create_ready,
    final_update,
    our_containers,
)

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    AgentState,
    AgentStateEvent,
    ConversationStatus,
    ErrorEvent,
    Event,
    SandboxEvent,
)
from jupyter_convo.manager.base import ConversationStartError
from jupyter_convo.manager.metadata import RUNTIME_DIED
from jupyter_convo.manager.sandboxes.docker import (
    LABEL_CONVERSATION,
    LABEL_INSTANCE,
    LABEL_OWNER,
    LABEL_ROOT,
    container_name,
)
from jupyter_convo.runtime.auth import SESSION_KEY_ENV
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTaskStatus
from jupyter_convo.testing import ScriptedLLM, reply, tool_call
from jupyter_convo.testing.collector import agent_says

pytestmark = pytest.mark.docker


def read_log(data_dir: Path, conversation_id: str) -> list[Event]:
    path = data_dir / "conversations" / conversation_id / "events.jsonl"
    with EventLog(path, read_only=True) as event_log:
        return event_log.read()


async def container_of(engine: Any, conversation_id: str) -> Any:
    return await asyncio.to_thread(engine.containers.get, container_name(conversation_id))


async def test_lifecycle_in_a_container(
    make_manager: MakeManager,
    settings: AgentSettings,
    container_llm: ScriptedLLM,
    engine: Any,
    data_dir: Path,
) -> None:
    container_llm.add_script(
        [
            tool_call("terminal", {"command": "echo made-in-the-container > note.txt"}),
            reply("first answer"),
            reply("second answer"),
            reply("third answer"),
        ]
    )
    manager = await make_manager(cpus=1.5, memory="1g")
    cid = await create_ready(manager, settings, "write a note")
    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(agent_says("first answer"), "the first answer")
    await stream.wait_for(awaiting_input, "awaiting_user_input")

    # The container: named, labelled, port on 127.0.0.1 only, the conversation dir mounted.
    container = await container_of(engine, cid)
    [info] = await manager.get_agent_loop_info(user_id="ada")
    assert info.sandbox == "docker" and info.runtime_id == container.id
    labels = container.labels
    assert labels[LABEL_CONVERSATION] == cid and labels[LABEL_OWNER] == "ada"
    assert labels[LABEL_INSTANCE] == manager.config.server_instance_id
    assert labels[LABEL_ROOT] == str((data_dir / "conversations").resolve())
    assert container.attrs["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert container.attrs["HostConfig"]["Memory"] == 1024**3
    [binding] = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    assert info.runtime_url == f"http://127.0.0.1:{binding['HostPort']}"
    workspace = data_dir / "conversations" / cid / "workspace"
    assert (workspace / "note.txt").read_text() == "made-in-the-container\n"
    # The session key is in the environment only; the LLM key never reaches the container.
    key = manager.session_key(cid)
    config = container.attrs["Config"]
    assert f"{SESSION_KEY_ENV}={key}" in config["Env"]
    llm_key = settings.llm.api_key.get_secret_value() if settings.llm.api_key else "unset"
    visible = " ".join([*config["Cmd"], *labels.values(), *config["Env"]])
    assert llm_key not in visible
    assert key not in " ".join([*config["Cmd"], *labels.values()])

    await manager.send_event_to_conversation(cid, MessageInput(text="and now?"))
    await stream.wait_for(agent_says("second answer"), "the second answer")

    # Stop: through the runtime, then the container; the container stays (exited).
    await manager.close_session(cid)
    assert manager.metadata(cid, "ada").status is ConversationStatus.STOPPED
    container = await container_of(engine, cid)
    assert container.status == "exited"
    first_id = container.id

    # Start again: the same container, the history rebuilt from the log.
    info = await manager.maybe_start_agent_loop(cid, user_id="ada", settings=settings)
    assert info.runtime_id == first_id
    assert (await container_of(engine, cid)).status == "running"
    await manager.send_event_to_conversation(cid, MessageInput(text="once more"))
    third = await stream.wait_for(agent_says("third answer"), "the answer after the restart")
    await stream.wait_for(lambda e: awaiting_input(e) and e.id > third.id, "the agent idle")
    assert [e.id for e in read_log(data_dir, cid)] == [e.id for e in stream.logged()]
    # Each start said how the tools are isolated: by the container itself, no jail in it.
    isolation = [e for e in read_log(data_dir, cid) if isinstance(e, SandboxEvent)]
    assert [(e.mechanism, e.confined) for e in isolation] == [("container", True)] * 2

    # Delete: the container goes with the conversation.
    await manager.delete_conversation(cid)
    await stream.close()
    assert await asyncio.to_thread(our_containers, engine, data_dir) == []
    assert not (data_dir / "conversations" / cid).exists()


async def test_killed_container_turns_the_conversation_to_error_with_its_log(
    make_manager: MakeManager,
    settings: AgentSettings,
    container_llm: ScriptedLLM,
    engine: Any,
    data_dir: Path,
) -> None:
    container_llm.add_script([reply("first answer"), reply("never sent", gate="held")])
    manager = await make_manager()
    cid = await create_ready(manager, settings, "start")
    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(awaiting_input, "awaiting_user_input")
    await manager.send_event_to_conversation(cid, MessageInput(text="think hard"))
    await asyncio.to_thread(container_llm.wait_for_requests, 2, WAIT)  # mid-LLM call
    before = read_log(data_dir, cid)

    await asyncio.to_thread((await container_of(engine, cid)).kill)

    died = await stream.wait_for(
        lambda e: isinstance(e, ErrorEvent) and e.code == RUNTIME_DIED, "RUNTIME_DIED"
    )
    meta = manager.metadata(cid, "ada")
    assert meta.status is ConversationStatus.ERROR
    assert not await manager.is_agent_loop_running(cid)
    after = read_log(data_dir, cid)
    assert [e.model_dump_json() for e in after[: len(before)]] == [
        e.model_dump_json() for e in before
    ]
    # RUNTIME_DIED, then the agent's state: its loop is gone (the last two events).
    assert after[-2].id == died.id and [e.id for e in after] == list(range(len(after)))
    assert isinstance(after[-1], AgentStateEvent) and after[-1].state is AgentState.ERROR
    assert (await container_of(engine, cid)).status == "exited"


async def test_server_restart_finds_the_container_and_streaming_resumes(
    make_manager: MakeManager,
    settings: AgentSettings,
    container_llm: ScriptedLLM,
    engine: Any,
) -> None:
    container_llm.add_script([reply("before the restart"), reply("after the restart")])
    first = await make_manager(keep_runtimes_on_shutdown=True)
    cid = await create_ready(first, settings, "go")
    stream = Collector(first.subscribe(cid))
    await stream.wait_for(awaiting_input, "awaiting_user_input")
    container_id = (await container_of(engine, cid)).id
    await stream.close()
    await first.shutdown()
    assert (await container_of(engine, cid)).status == "running"

    second = await make_manager()
    assert await second.get_running_agent_loops(user_id="ada") == {cid}
    [info] = await second.get_agent_loop_info(user_id="ada")
    assert info.runtime_id == container_id
    assert second.metadata(cid, "ada").status is ConversationStatus.RUNNING
    resumed = Collector(second.subscribe(cid))
    await resumed.wait_for(agent_says("before the restart"), "the earlier answer from the log")
    await second.send_event_to_conversation(cid, MessageInput(text="still there?"))
    await resumed.wait_for(agent_says("after the restart"), "the answer after the restart")
    await resumed.close()


async def test_missing_image_ends_the_start_in_error_saying_how_to_build_it(
    make_manager: MakeManager, settings: AgentSettings
) -> None:
    manager = await make_manager(image="jupyter-convo-runtime:no-such-tag")
    task = await manager.create_conversation(user_id="ada", settings=settings)
    update = await final_update(manager, task)
    assert update.status is StartTaskStatus.ERROR
    assert update.detail is not None
    assert "jupyter-convo-runtime:no-such-tag" in update.detail
    assert "jupyter convo build-image" in update.detail
    assert task.conversation_id is not None
    assert manager.store.get(task.conversation_id).status is ConversationStatus.ERROR  # type: ignore[union-attr]


async def test_no_engine_ends_the_start_in_error_saying_what_to_do(
    make_manager: MakeManager, settings: AgentSettings, tmp_path: Path
) -> None:
    manager = await make_manager(docker_host=f"unix://{tmp_path}/no-engine.sock")
    task = await manager.create_conversation(user_id="ada", settings=settings)
    update = await final_update(manager, task)
    assert update.status is StartTaskStatus.ERROR
    assert update.detail is not None
    assert "cannot reach a Docker engine" in update.detail and "docker_host" in update.detail


async def test_port_taken_while_stopped_ends_the_restart_in_error(
    make_manager: MakeManager, settings: AgentSettings, container_llm: ScriptedLLM, engine: Any
) -> None:
    container_llm.add_script([reply("hello")])
    manager = await make_manager()
    cid = await create_ready(manager, settings, "hi")
    [info] = await manager.get_agent_loop_info(user_id="ada")
    assert info.runtime_url is not None
    port = int(info.runtime_url.rsplit(":", 1)[1])
    await manager.close_session(cid)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(ConversationStartError) as caught:
            await manager.maybe_start_agent_loop(cid, user_id="ada", settings=settings)
    message = str(caught.value)
    assert f"port {port}" in message and "docker rm -f" in message
    assert manager.metadata(cid, "ada").status is ConversationStatus.ERROR


async def test_warm_pool_binds_a_prestarted_container(
    make_manager: MakeManager,
    settings: AgentSettings,
    container_llm: ScriptedLLM,
    engine: Any,
    data_dir: Path,
) -> None:
    container_llm.add_script([reply("warm hello"), reply("warm again")])
    manager = await make_manager(warm_pool_size=1)
    assert manager.pool is not None
    await manager.pool.wait_idle(timeout=WAIT)
    [warm] = manager.pool.idle
    assert (await container_of(engine, warm.conversation_id)).id == warm.handle.runtime_id

    cid = await create_ready(manager, settings, "hello")

    assert cid == warm.conversation_id
    [info] = await manager.get_agent_loop_info(user_id="ada")
    assert info.runtime_id == warm.handle.runtime_id  # the very container started ahead
    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(agent_says("warm hello"), "the answer")
    await stream.wait_for(awaiting_input, "awaiting_user_input")
    # Stopped and started again: the same container, booting with the conversation's key.
    await manager.close_session(cid)
    info = await manager.maybe_start_agent_loop(cid, user_id="ada", settings=settings)
    assert info.runtime_id == warm.handle.runtime_id
    await manager.send_event_to_conversation(cid, MessageInput(text="still warm?"))
    await stream.wait_for(agent_says("warm again"), "the answer after the restart")
    await stream.close()
    # A replacement is started in the background; shutdown removes it (idle, no conversation).
    await manager.pool.wait_idle(timeout=WAIT)
    [replacement] = manager.pool.idle
    assert replacement.handle.runtime_id != warm.handle.runtime_id
    await manager.close_session(cid)
    await manager.shutdown()
    names = [c.name for c in await asyncio.to_thread(our_containers, engine, data_dir)]
    assert container_name(replacement.conversation_id) not in names
    assert not (data_dir / "conversations" / replacement.conversation_id).exists()


async def test_a_workspace_outside_the_conversation_folder_is_mounted(
    make_manager: MakeManager,
    settings: AgentSettings,
    container_llm: ScriptedLLM,
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.csv").write_text("a,b\n1,2\n")
    container_llm.add_script(
        [tool_call("terminal", {"command": "wc -l < data.csv > rows.txt"}), reply("counted")]
    )
    manager = await make_manager(warm_pool_size=1)
    assert manager.pool is not None
    await manager.pool.wait_idle(timeout=WAIT)
    [warm] = manager.pool.idle
    task = await manager.create_conversation(
        user_id="ada",
        settings=settings,
        initial_message=InitialMessage(text="count the rows"),
        workspace=str(project),
    )
    update = await final_update(manager, task)
    assert update.status is StartTaskStatus.READY, update.detail
    # The warm container cannot see that folder: a cold one was started, the warm one waits.
    assert task.conversation_id != warm.conversation_id
    assert manager.pool.idle == [warm]
    assert task.conversation_id is not None
    stream = Collector(manager.subscribe(task.conversation_id))
    await stream.wait_for(agent_says("counted"), "the answer")
    await stream.close()
    assert (project / "rows.txt").read_text().strip() == "2"
