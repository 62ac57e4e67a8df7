"""NestedConversationManager over the kubernetes sandbox and the fake API: real runtimes
in the fake's pods, the scripted LLM, the same lifecycle the real-cluster tier runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_harness import NAMESPACE, MakeManager
from lifecycle import WAIT, Collector, agent_says, create_ready, lifecycle, server_restart

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.store.conversations import StartTaskStatus
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply
from jupyter_convo.testing.fake_kubernetes import FakeKubernetes

pytestmark = pytest.mark.integration


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    scripted = ScriptedLLM()
    with scripted.serve():
        yield scripted


@pytest.fixture
def settings(llm: ScriptedLLM) -> AgentSettings:
    return AgentSettings(llm=llm_config_for(llm))


def pod_of(cid: str) -> str:
    return f"convo-runtime-{cid}"


async def test_lifecycle_in_pods(
    fake: FakeKubernetes,
    make_manager: MakeManager,
    settings: AgentSettings,
    llm: ScriptedLLM,
    data_dir: Path,
) -> None:
    cid = await lifecycle(make_manager, settings, llm, data_dir)
    # Two pods, each deleted by the stop. The manager first asks the runtime to stop: when
    # it has exited by the time the delete comes, its pod went Succeeded first.
    transitions = [t for t in fake.transitions[pod_of(cid)] if t != "Succeeded"]
    assert transitions == [
        "Pending", "Scheduled", "Running", "Terminating", "Deleted",
        "Pending", "Scheduled", "Running", "Terminating", "Deleted",
    ]  # fmt: skip
    assert not fake.pods


async def test_server_restart_adopts_the_pod_by_label(
    fake: FakeKubernetes, make_manager: MakeManager, settings: AgentSettings, llm: ScriptedLLM
) -> None:
    cid, uid = await server_restart(make_manager, settings, llm)
    assert fake.pods[(NAMESPACE, pod_of(cid))]["metadata"]["uid"] == uid
    assert fake.transitions[pod_of(cid)] == ["Pending", "Scheduled", "Running"]


async def test_an_image_pull_failure_ends_the_start_task_saying_what_to_do(
    fake: FakeKubernetes, make_manager: MakeManager, settings: AgentSettings
) -> None:
    fake.behaviours.append("image_pull_error")
    manager = await make_manager()
    task = await manager.create_conversation(user_id="ada", settings=settings)
    updates = [update async for update in manager.start_task_updates(task.id)]
    assert updates[-1].status is StartTaskStatus.ERROR
    assert updates[-1].detail is not None
    assert "cannot pull the runtime image" in updates[-1].detail
    assert "jupyter convo build-image" in updates[-1].detail
    assert any(u.detail and u.detail.startswith("Failed: Failed to pull image") for u in updates)
    assert not fake.pods


async def test_warm_pool_binds_a_prestarted_pod(
    fake: FakeKubernetes, make_manager: MakeManager, settings: AgentSettings, llm: ScriptedLLM
) -> None:
    llm.add_script([reply("warm hello")])
    manager = await make_manager(warm_pool_size=1)
    assert manager.pool is not None
    await manager.pool.wait_idle(timeout=WAIT)
    [warm] = manager.pool.idle
    warm_pod = fake.pods[(NAMESPACE, pod_of(warm.conversation_id))]
    assert warm_pod["metadata"]["labels"]["jupyter-convo/owner"] == ""  # nobody's yet

    cid, _ = await create_ready(manager, settings, "hello")

    assert cid == warm.conversation_id
    [info] = await manager.get_agent_loop_info(user_id="ada")
    assert info.runtime_id == warm.handle.runtime_id  # the very pod started ahead
    stream = Collector(manager.subscribe(cid))
    await stream.wait_for(agent_says("warm hello"), "the answer")
    await stream.close()
    # A replacement starts in the background; shutdown deletes it (idle, no conversation).
    await manager.pool.wait_idle(timeout=WAIT)
    [replacement] = manager.pool.idle
    manager.config.keep_runtimes_on_shutdown = False
    await manager.shutdown()
    assert fake.transitions[pod_of(replacement.conversation_id)][-1] == "Deleted"
    assert fake.transitions[pod_of(cid)][-1] == "Deleted"
