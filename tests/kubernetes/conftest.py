"""The kubernetes sandbox against the fake Kubernetes API (``jupyter_convo.testing``).

The fake serves the API over HTTP in the test's loop; its kubelet runs a real runtime
process per ``run`` pod on a loopback address of its own (the pod IP). The shared volume is
the test's data directory (the "pod" runs on this machine, so the paths are the same).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kube_harness import CLAIM, NAMESPACE, MakeManager, MakeSandbox, free_port
from traitlets.config import Config

from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes.kubernetes import KubernetesSandbox
from jupyter_convo.testing.fake_kubernetes import FakeKubernetes


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubernetes]:
    api = FakeKubernetes()
    await api.start()
    yield api
    await api.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    (path / "conversations").mkdir(parents=True)
    return path


@pytest.fixture
def runtime_port() -> int:
    return free_port()


@pytest.fixture
def kube_config(fake: FakeKubernetes, tmp_path: Path, data_dir: Path, runtime_port: int) -> Config:
    """``c.KubernetesSandbox`` for the fake: its kubeconfig, the data dir as the claim."""
    config = Config()
    traits = config.KubernetesSandbox
    traits.kubeconfig = str(fake.kubeconfig(tmp_path / "kubeconfig", NAMESPACE))
    traits.namespace = NAMESPACE
    traits.shared_volume_claim = CLAIM
    traits.shared_volume_mount_path = str(data_dir)
    traits.runtime_port = runtime_port
    traits.poll_interval = 0.05
    traits.network_policy_ingress_from = [
        {"podSelector": {"matchLabels": {"hub.jupyter.org/username": "ada"}}}
    ]
    return config


@pytest.fixture
async def make_sandbox(kube_config: Config, data_dir: Path) -> AsyncIterator[MakeSandbox]:
    made: list[KubernetesSandbox] = []

    def make(**traits: Any) -> KubernetesSandbox:
        config = Config(kube_config)
        for name, value in traits.items():
            setattr(config.KubernetesSandbox, name, value)
        sandbox = KubernetesSandbox(
            data_dir / "conversations", server_instance_id="server-1", config=config
        )
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        await sandbox.aclose()


@pytest.fixture
async def make_manager(make_sandbox: MakeSandbox, data_dir: Path) -> AsyncIterator[MakeManager]:
    made: list[NestedConversationManager] = []

    async def make(**overrides: Any) -> NestedConversationManager:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "sandbox": "kubernetes",
            "stop_poll_interval": 0.2,
            "kill_grace_seconds": 2.0,
            **overrides,
        }
        config = ManagerConfig(**values)
        sandbox = make_sandbox()
        sandbox.server_instance_id = config.server_instance_id
        manager = NestedConversationManager(config, sandbox=sandbox)
        await manager.start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.config.keep_runtimes_on_shutdown = False
        await manager.shutdown()
