"""The conversation lifecycles both kubernetes tiers run (the fake API here, a real cluster
in test_real_cluster.py), as the docker tier runs them over containers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import AgentStateEvent, Event, SandboxEvent
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTask, StartTaskStatus
from jupyter_convo.testing import ScriptedLLM, reply, tool_call
from jupyter_convo.testing.collector import EventCollector, agent_says

WAIT = 120.0  # upper bound of every wait; reaching it fails the test

MakeManager = Callable[..., Awaitable[NestedConversationManager]]


class Collector(EventCollector):
    timeout = WAIT


def awaiting_input(event: Event) -> bool:
    return isinstance(event, AgentStateEvent) and event.state.value == "awaiting_user_input"


def read_log(data_dir: Path, conversation_id: str) -> list[Event]:
    path = data_dir / "conversations" / conversation_id / "events.jsonl"
    with EventLog(path, read_only=True) as event_log:
        return event_log.read()


async def all_updates(manager: NestedConversationManager, task: StartTask) -> list[StartTask]:
    """Every state of the start task until READY or ERROR."""

    async def collect() -> list[StartTask]:
        return [update async for update in manager.start_task_updates(task.id)]

    return await asyncio.wait_for(collect(), WAIT)


async def create_ready(
    manager: NestedConversationManager, settings: AgentSettings, text: str
) -> tuple[str, list[StartTask]]:
    task = await manager.create_conversation(
        user_id="ada", settings=settings, initial_message=InitialMessage(text=text)
    )
    updates = await all_updates(manager, task)
    assert updates[-1].status is StartTaskStatus.READY, updates[-1].detail
    assert task.conversation_id is not None
    return task.conversation_id, updates


async def lifecycle(
    make_manager: MakeManager, settings: AgentSettings, llm: ScriptedLLM, data_dir: Path
) -> str:
    """Start, the agent's tool writes on the shared volume, a second turn, stop, start
    again in a new pod, delete. Returns the conversation id."""
    llm.add_script(
        [
            tool_call("terminal", {"command": "echo made-in-the-pod > note.txt"}),
            reply("first answer"),
            reply("second answer"),
            reply("third answer"),
        ]
    )
    manager = await make_manager()
    cid, updates = await create_ready(manager, settings, "write a note")
    # The start task said what the pod was doing while the sandbox waited for it.
    waiting = [u.detail for u in updates if u.status is StartTaskStatus.WAITING_FOR_SANDBOX]
    assert any(detail and detail.startswith("Scheduled:") for detail in waiting), waiting
    assert any(detail and detail.startswith("ready at http://") for detail in waiting), waiting

    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(agent_says("first answer"), "the first answer")
    await stream.wait_for(awaiting_input, "awaiting_user_input")
    [info] = await manager.get_agent_loop_info(user_id="ada")
    first_pod = info.runtime_id
    workspace = data_dir / "conversations" / cid / "workspace"
    assert (workspace / "note.txt").read_text().strip() == "made-in-the-pod"

    await manager.send_event_to_conversation(cid, MessageInput(text="again"))
    await stream.wait_for(agent_says("second answer"), "the second answer")
    await manager.close_session(cid)
    assert not await manager.is_agent_loop_running(cid)

    # Started again: a new pod (a pod cannot restart), the same files and log.
    info = await manager.maybe_start_agent_loop(cid, user_id="ada", settings=settings)
    assert info.runtime_id != first_pod
    await manager.send_event_to_conversation(cid, MessageInput(text="once more"))
    await stream.wait_for(agent_says("third answer"), "the answer in the new pod")
    isolation = [e for e in read_log(data_dir, cid) if isinstance(e, SandboxEvent)]
    assert [(e.mechanism, e.confined) for e in isolation] == [("container", True)] * 2
    await stream.close()

    await manager.delete_conversation(cid)
    assert not (data_dir / "conversations" / cid).exists()
    return cid


async def server_restart(
    make_manager: MakeManager, settings: AgentSettings, llm: ScriptedLLM
) -> tuple[str, str]:
    """A restarted server adopts the running pod by label; streaming resumes. Returns the
    conversation id and the pod's uid."""
    llm.add_script([reply("before the restart"), reply("after the restart")])
    first = await make_manager(keep_runtimes_on_shutdown=True)
    cid, _ = await create_ready(first, settings, "go")
    stream = Collector(first.subscribe(cid))
    await stream.wait_for(awaiting_input, "awaiting_user_input")
    [info] = await first.get_agent_loop_info(user_id="ada")
    await stream.close()
    await first.shutdown()

    second = await make_manager()
    assert await second.get_running_agent_loops(user_id="ada") == {cid}
    [adopted] = await second.get_agent_loop_info(user_id="ada")
    assert adopted.runtime_id == info.runtime_id
    resumed = Collector(second.subscribe(cid))
    await resumed.wait_for(agent_says("before the restart"), "the earlier answer from the log")
    await second.send_event_to_conversation(cid, MessageInput(text="still there?"))
    await resumed.wait_for(agent_says("after the restart"), "the answer after the restart")
    await resumed.close()
    return cid, info.runtime_id
