"""The warm pool over the process sandbox: real runtime processes, the scripted LLM.

A start must bind the very runtime that was started ahead (checked by pid, never by time),
with the conversation's key replacing the runtime's throwaway one; idle runtimes go away on
shutdown, and what a crashed server's pool left is removed by the next one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.schema import MessageEvent
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.pool import WARM_MARKER, WarmPool
from jupyter_convo.manager.sandboxes.process import ProcessSandbox, pid_alive, wait_pid_exit
from jupyter_convo.runtime.auth import SESSION_KEY_HEADER
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTaskStatus, new_id
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply

pytestmark = pytest.mark.integration

WAIT = 30.0


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def pooled(data_dir: Path) -> AsyncIterator[NestedConversationManager]:
    manager = NestedConversationManager(
        ManagerConfig(data_dir=data_dir, warm_pool_size=1, keep_runtimes_on_shutdown=False)
    )
    await manager.start()
    yield manager
    await manager.shutdown()


@pytest.fixture
def settings(scripted_llm: ScriptedLLM) -> AgentSettings:
    return AgentSettings(llm=llm_config_for(scripted_llm))


def record(data_dir: Path, conversation_id: str) -> dict[str, int]:
    path = data_dir / "conversations" / conversation_id / "runtime.json"
    data: dict[str, int] = json.loads(path.read_text())
    return data


async def wait_answer(manager: NestedConversationManager, cid: str, text: str) -> None:
    async def scan() -> None:
        async for event in manager.subscribe(cid):
            if isinstance(event, MessageEvent) and event.source == "agent" and event.text == text:
                return

    await asyncio.wait_for(scan(), WAIT)


async def test_a_start_binds_the_runtime_started_ahead(
    pooled: NestedConversationManager,
    settings: AgentSettings,
    scripted_llm: ScriptedLLM,
    data_dir: Path,
) -> None:
    scripted_llm.add_script([reply("warm answer")])
    assert pooled.pool is not None
    await pooled.pool.wait_idle(timeout=WAIT)
    [warm] = pooled.pool.idle
    assert warm.handle.pid is not None and pid_alive(warm.handle.pid)
    assert (data_dir / "conversations" / warm.conversation_id / WARM_MARKER).exists()

    task = await pooled.create_conversation(
        user_id="ada", settings=settings, initial_message=InitialMessage(text="hi")
    )
    statuses = [u.status async for u in pooled.start_task_updates(task.id)]
    assert statuses[-1] is StartTaskStatus.READY

    cid = task.conversation_id
    assert cid == warm.conversation_id
    assert record(data_dir, cid)["pid"] == warm.handle.pid  # the very process started ahead
    [info] = await pooled.get_agent_loop_info(user_id="ada")
    assert info.runtime_id == warm.handle.runtime_id
    assert not (data_dir / "conversations" / cid / WARM_MARKER).exists()
    await wait_answer(pooled, cid, "warm answer")  # its settings arrived at bind time

    # The key was set at bind time: the throwaway boot key no longer opens it.
    async with httpx.AsyncClient(base_url=warm.handle.url, timeout=WAIT) as client:
        path = f"/api/conversations/{cid}"
        old = await client.get(path, headers={SESSION_KEY_HEADER: warm.boot_key})
        new = await client.get(path, headers={SESSION_KEY_HEADER: pooled.session_key(cid)})
    assert warm.boot_key != pooled.session_key(cid)
    assert (old.status_code, new.status_code) == (401, 200)

    # Refilled in the background with another process.
    await pooled.pool.wait_idle(timeout=WAIT)
    [replacement] = pooled.pool.idle
    assert replacement.handle.pid != warm.handle.pid
    assert replacement.conversation_id != cid


async def test_shutdown_stops_idle_runtimes_and_removes_their_folders(
    data_dir: Path,
) -> None:
    manager = NestedConversationManager(ManagerConfig(data_dir=data_dir, warm_pool_size=2))
    await manager.start()
    assert manager.pool is not None
    await manager.pool.wait_idle(timeout=WAIT)
    idle = manager.pool.idle
    assert len({warm.handle.pid for warm in idle}) == 2

    await manager.shutdown()  # keep_runtimes_on_shutdown does not keep idle ones

    for warm in idle:
        assert warm.handle.pid is not None and not pid_alive(warm.handle.pid)
        assert not (data_dir / "conversations" / warm.conversation_id).exists()


async def test_leftovers_of_a_crashed_servers_pool_are_removed(data_dir: Path) -> None:
    root = data_dir / "conversations"
    # A pool whose server "crashed": never closed, its runtime outlives it.
    orphan_pool = WarmPool(
        ProcessSandbox(root),
        1,
        conversation_key=lambda cid: "unused",
        new_id=new_id,
        start_timeout=WAIT,
    )
    orphan_pool.start()
    await orphan_pool.wait_idle(timeout=WAIT)
    [orphan] = orphan_pool.idle
    assert orphan.handle.pid is not None

    manager = NestedConversationManager(ManagerConfig(data_dir=data_dir))
    await manager.start()
    try:
        await asyncio.wait_for(wait_pid_exit(orphan.handle.pid), WAIT)
        assert not (root / orphan.conversation_id).exists()
        assert manager.store.get(orphan.conversation_id) is None
    finally:
        await manager.shutdown()
        await orphan_pool.close()


def runtimes_under(root: Path) -> list[int]:
    """Pids of runtime processes whose conversations root is ``root``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"jupyter_convo.runtime" in args and str(root).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Check ``condition`` every 10 ms until it holds; fail after WAIT seconds."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 (a file appears: no event to wait on)
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {WAIT}s: {what}") from None


async def test_shutdown_while_the_pool_fills_leaves_no_runtime(data_dir: Path) -> None:
    root = data_dir / "conversations"
    manager = NestedConversationManager(ManagerConfig(data_dir=data_dir, warm_pool_size=1))
    await manager.start()  # the pool starts its first runtime in the background
    # Its process is up (recorded); it is now warming up (importing the agent modules).
    await wait_until(lambda: any(root.glob("*/runtime.json")), "a warm runtime recorded")
    await manager.shutdown()

    assert runtimes_under(root) == []
    assert list(root.iterdir()) == []
