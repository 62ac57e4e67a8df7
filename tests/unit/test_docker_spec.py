"""What a docker runtime container is made of (no engine needed), and the image's wheels."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config, Configurable

from jupyter_convo.cli import build_parser
from jupyter_convo.image import (
    default_base_image,
    installed_pins,
    python_version,
    runtime_requirements,
)
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.sandboxes import make_sandbox
from jupyter_convo.manager.sandboxes.docker import (
    LABEL_CONVERSATION,
    LABEL_OWNER,
    LABEL_ROOT,
    DockerSandbox,
    _published_port,
    container_name,
)


@pytest.fixture
def sandbox(tmp_path: Path) -> DockerSandbox:
    return DockerSandbox(tmp_path / "conversations", image="img:1", server_instance_id="srv")


def test_the_command_holds_paths_and_port_but_no_secret(sandbox: DockerSandbox) -> None:
    command = sandbox.command("c1")
    conv_dir = str(sandbox.conversation_dir("c1"))
    assert command[command.index("--conversations-root") + 1] == str(sandbox.conversations_root)
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--log-file") + 1] == f"{conv_dir}/runtime.log"
    assert not any("KEY" in part.upper() for part in command)


def test_labels_name_the_conversation_owner_instance_and_root(sandbox: DockerSandbox) -> None:
    labels = sandbox.labels("c1", "ada")
    assert labels[LABEL_CONVERSATION] == "c1" and labels[LABEL_OWNER] == "ada"
    assert labels[LABEL_ROOT] == str(sandbox.conversations_root)
    assert sandbox.labels("c1", None)[LABEL_OWNER] == ""
    assert container_name("c1") == "convo-runtime-c1"


def test_mounts_keep_host_paths_and_add_an_outside_workspace(
    sandbox: DockerSandbox, tmp_path: Path
) -> None:
    conv_dir = str(sandbox.conversation_dir("c1"))
    assert sandbox.mounts("c1", None) == {conv_dir: {"bind": conv_dir, "mode": "rw"}}
    inside = sandbox.conversation_dir("c1") / "workspace"
    assert sandbox.mounts("c1", inside) == sandbox.mounts("c1", None)
    outside = tmp_path / "project"
    mounts = sandbox.mounts("c1", outside)
    assert mounts[str(outside)] == {"bind": str(outside), "mode": "rw"}
    assert sandbox.reaches("c1", inside) and not sandbox.reaches("c1", outside)
    assert not sandbox.reaches("c1", sandbox.conversation_dir("c1") / ".." / "c2")


def test_published_port_from_state_else_configuration() -> None:
    live = {"NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41"}]}}}
    configured = {"HostConfig": {"PortBindings": {"8000/tcp": [{"HostPort": "42"}]}}}
    assert _published_port(live) == 41
    assert _published_port({**configured, "NetworkSettings": {"Ports": {}}}) == 42
    assert _published_port({}) is None


def test_config_selects_the_docker_sandbox(tmp_path: Path) -> None:
    config = ManagerConfig(data_dir=tmp_path, sandbox="docker")
    traits = Config({"DockerSandbox": {"image": "x:y", "cpus": 2, "memory": "1g"}})
    sandbox = make_sandbox(config, parent=Configurable(config=traits))
    assert isinstance(sandbox, DockerSandbox)
    assert (sandbox.image, sandbox.cpus, sandbox.memory) == ("x:y", 2, "1g")
    assert sandbox.keeps_environment


def test_runtime_requirements_leave_out_the_server_and_extras() -> None:
    names = [requirement.split(">")[0].split("=")[0] for requirement in runtime_requirements()]
    assert "jupyter-server" not in names and "jupyter_server" not in names
    assert {"pydantic", "tornado", "ipykernel"} <= set(names)
    assert not any(name in names for name in ("pytest", "ruff", "litellm"))


def test_pins_are_exact_versions_without_the_project() -> None:
    pins = installed_pins()
    assert pins and all("==" in pin for pin in pins)
    assert not any(pin.startswith("jupyter-convo==") for pin in pins)


def test_build_image_command_is_offered_with_a_matching_base() -> None:
    args = build_parser().parse_args(["build-image", "--with", "pandas", "--tag", "t:1"])
    assert args.extra_packages == ["pandas"] and args.tag == "t:1" and args.base is None
    assert hasattr(args, "run_local")
    assert default_base_image() == f"python:{python_version()}-slim"
