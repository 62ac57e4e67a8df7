"""The real-cluster tier: the same lifecycles as over the fake, against a real cluster.

Runs only when ``KUBECONFIG`` is set (no cluster can run on the project's machines: no
registry for kind or k3s images, no kube-apiserver package). Run it from a pod of the
cluster (a JupyterHub user server, say) whose pod mounts a PersistentVolumeClaim, with
``JUPYTER_CONVO_TEST_K8S_DATA`` a fresh directory on that claim: the sandbox reads the
claim, node, owner and NetworkPolicy peers from that pod, as in production. Optional:
``JUPYTER_CONVO_TEST_K8S_IMAGE`` (the runtime image the nodes can pull; default
``jupyter-convo-runtime:latest``) and ``JUPYTER_CONVO_TEST_K8S_NAMESPACE``. Once
``KUBECONFIG`` is set nothing is skipped: a missing setting fails with what to set.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from lifecycle import MakeManager, lifecycle, server_restart
from traitlets.config import Config

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes.kubernetes import KubernetesSandbox
from jupyter_convo.testing import ScriptedLLM, llm_config_for

if not os.environ.get("KUBECONFIG"):
    pytest.skip(
        "real-cluster tier: KUBECONFIG is not set (no Kubernetes cluster can run here; "
        "see docs/kubernetes.md, 'Testing against a real cluster')",
        allow_module_level=True,
    )

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster_data_dir() -> Path:
    base = os.environ.get("JUPYTER_CONVO_TEST_K8S_DATA")
    if not base:
        pytest.fail("set JUPYTER_CONVO_TEST_K8S_DATA to a directory on a claim this pod mounts")
    path = Path(base) / f"convo-test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def cluster_llm() -> Iterator[ScriptedLLM]:
    """A scripted LLM on every interface: runtime pods reach it at this pod's IP."""
    llm = ScriptedLLM(host="0.0.0.0")
    with llm.serve():
        yield llm


@pytest.fixture
def cluster_settings(cluster_llm: ScriptedLLM) -> AgentSettings:
    address = socket.gethostbyname(socket.gethostname())
    base_url = f"http://{address}:{cluster_llm.server.port}/v1"
    return AgentSettings(llm=llm_config_for(cluster_llm, base_url=base_url))


@pytest.fixture
async def cluster_manager(cluster_data_dir: Path) -> AsyncIterator[MakeManager]:
    made: list[NestedConversationManager] = []

    async def make(**overrides: Any) -> NestedConversationManager:
        config = ManagerConfig(
            data_dir=cluster_data_dir,
            sandbox="kubernetes",
            runtime_start_timeout=300,
            **overrides,
        )
        traits = Config()
        traits.KubernetesSandbox.kubeconfig = os.environ["KUBECONFIG"]
        traits.KubernetesSandbox.image = os.environ.get(
            "JUPYTER_CONVO_TEST_K8S_IMAGE", "jupyter-convo-runtime:latest"
        )
        traits.KubernetesSandbox.namespace = os.environ.get("JUPYTER_CONVO_TEST_K8S_NAMESPACE", "")
        sandbox = KubernetesSandbox(
            config.conversations_root,
            server_instance_id=config.server_instance_id,
            config=traits,
        )
        manager = NestedConversationManager(config, sandbox=sandbox)
        await manager.start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.config.keep_runtimes_on_shutdown = False
        await manager.shutdown()


async def test_lifecycle_on_a_real_cluster(
    cluster_manager: MakeManager,
    cluster_settings: AgentSettings,
    cluster_llm: ScriptedLLM,
    cluster_data_dir: Path,
) -> None:
    await lifecycle(cluster_manager, cluster_settings, cluster_llm, cluster_data_dir)


async def test_server_restart_on_a_real_cluster(
    cluster_manager: MakeManager, cluster_settings: AgentSettings, cluster_llm: ScriptedLLM
) -> None:
    await server_restart(cluster_manager, cluster_settings, cluster_llm)
