"""Sandbox kinds as plug-ins: the entry-point registry, each kind's own traits, the manager
class trait, and the deprecated ``c.ConvoExtension.docker_*`` names still read."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config, Configurable

from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes import make_sandbox
from jupyter_convo.manager.sandboxes.docker import DockerSandbox
from jupyter_convo.manager.sandboxes.process import ProcessSandbox
from jupyter_convo.manager.sandboxes.registry import (
    UnknownSandboxKind,
    describe_sandboxes,
    load_sandbox_class,
    sandbox_kinds,
)
from jupyter_convo.server.app import ConvoExtension, build_manager
from jupyter_convo.store.conversations import ConversationStore


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def extension(tmp_path: Path, **sections: dict[str, object]) -> ConvoExtension:
    config = Config({"ConvoExtension": {"data_dir": str(tmp_path / "data")}})
    for section, values in sections.items():
        config[section].update(values)
    return ConvoExtension(config=config)


def test_the_built_in_kinds_come_from_entry_points() -> None:
    assert {"process", "docker"} <= set(sandbox_kinds())
    assert load_sandbox_class("process") is ProcessSandbox
    assert load_sandbox_class("docker") is DockerSandbox
    described = {info.kind: info for info in describe_sandboxes()}
    assert described["process"].available and described["process"].description


def test_an_unknown_kind_names_the_installed_ones() -> None:
    with pytest.raises(UnknownSandboxKind, match=r"'vm'.*docker, kubernetes, process"):
        load_sandbox_class("vm")


def test_each_kind_reads_its_own_config_section(tmp_path: Path) -> None:
    parent = Configurable(
        config=Config(
            {
                "ProcessSandbox": {"python_executable": "/opt/py/bin/python3"},
                "Confinement": {"network": False},
            }
        )
    )
    config = ManagerConfig(data_dir=tmp_path, upload_max_bytes=1000)
    sandbox = make_sandbox(config, parent=parent)
    assert isinstance(sandbox, ProcessSandbox)
    assert sandbox.python_executable == "/opt/py/bin/python3"
    assert sandbox.max_upload_bytes == 1000
    assert sandbox.server_instance_id == config.server_instance_id
    assert sandbox.confinement is not None and sandbox.confinement.network is False
    assert sandbox.command("c1")[0] == "/opt/py/bin/python3"


def test_docker_traits_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TraitError, match="cpus"):
        DockerSandbox(tmp_path, cpus=0)


def test_the_deprecated_docker_names_are_read_with_a_warning(tmp_path: Path) -> None:
    app = extension(
        tmp_path,
        ConvoExtension={"sandbox": "docker", "docker_image": "old:tag", "docker_cpus": 1.5},
        DockerSandbox={"cpus": 3.0, "memory": "1g"},
    )
    records = _Records()
    app.log.addHandler(records)
    app._forward_deprecated_traits()
    sandbox = make_sandbox(app.manager_config(), parent=app)
    assert isinstance(sandbox, DockerSandbox)
    # The old name fills the new one; a new name set too wins.
    assert (sandbox.image, sandbox.cpus, sandbox.memory) == ("old:tag", 3.0, "1g")
    warned = [message for message in records.messages if "deprecated" in message]
    assert any("docker_image" in m and "DockerSandbox.image" in m for m in warned), warned
    assert any("docker_cpus" in m for m in warned), warned


def test_an_unknown_sandbox_setting_names_the_trait(tmp_path: Path) -> None:
    app = extension(tmp_path, ConvoExtension={"sandbox": "vm"})
    with pytest.raises(TraitError, match=r"c\.ConvoExtension\.sandbox.*'vm'.*process"):
        app.manager_config()


def test_help_all_lists_every_registered_sandbox_class(tmp_path: Path) -> None:
    app = extension(tmp_path)
    assert {ProcessSandbox, DockerSandbox} <= set(app.classes)


class RecordingManager(NestedConversationManager):
    """A manager class chosen by configuration."""


def test_the_manager_class_is_a_trait(tmp_path: Path) -> None:
    app = extension(tmp_path, ConvoExtension={"manager_class": RecordingManager})
    assert app.manager_class is RecordingManager
    config = app.manager_config()
    store = ConversationStore(config.db_path)
    try:
        manager = build_manager(app.manager_class, config, store, parent=app)
        assert isinstance(manager, RecordingManager)
        assert isinstance(manager.sandbox, ProcessSandbox) and manager.store is store
    finally:
        store.close()
    with pytest.raises(TraitError):
        extension(tmp_path, ConvoExtension={"manager_class": "builtins.dict"}).manager_class  # noqa: B018
