"""The jail's plan (``Confiner``) and the server's policy (``Confinement``), without running
bubblewrap: what is mounted where, in which order, and what the tools' environment holds.
Running jails are tested in tests/integration/test_confinement.py."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from jupyter_convo.agent.confine import ConfinementSpec, Confiner, probe
from jupyter_convo.manager.sandboxes.confinement import Confinement


def spec(**values: object) -> ConfinementSpec:
    return ConfinementSpec.model_validate({"mechanism": "bubblewrap", "bwrap": "bwrap", **values})


def pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    """(source, destination) of every ``flag SRC DEST`` in ``args``."""
    return [(args[i + 1], args[i + 2]) for i, arg in enumerate(args) if arg == flag]


def singles(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def position(args: list[str], flag: str, destination: str) -> int:
    """Where the (first) ``flag ... destination`` operation stands in ``args``."""
    for i, arg in enumerate(args):
        if arg != flag:
            continue
        arity = 1 if flag in ("--tmpfs", "--remount-ro") else 2
        if args[i + arity] == destination:
            return i
    raise AssertionError(f"no {flag} {destination} in {args}")


@pytest.fixture
def conversation(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "conversations" / "c1"
    (path / "workspace").mkdir(parents=True)
    return path


def test_a_default_jail(conversation: Path) -> None:
    workspace = conversation / "workspace"
    jail = Confiner(spec(), workspace=workspace, directory=conversation)
    args = jail.command(["bash", "-c", "true"], cwd=workspace)
    assert args[0] == "bwrap"
    for option in ("--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc"):
        assert option in args
    assert args[args.index("--cap-drop") + 1] == "ALL"
    assert "--unshare-net" not in args
    assert args[-4:] == ["--", "bash", "-c", "true"]
    assert args[args.index("--chdir") + 1] == str(workspace)
    binds = pairs(args, "--bind")
    # /tmp first (the workspace may lie under the host's /tmp), then the rest on top.
    assert binds[0] == (str(conversation / "tmp"), "/tmp")
    assert (str(workspace), str(workspace)) in binds
    assert (str(conversation / "home"), str(conversation / "home")) in binds
    read_only = [dest for _, dest in pairs(args, "--ro-bind")]
    assert "/usr" in read_only
    assert os.path.normpath(sys.base_prefix) in read_only or any(
        os.path.normpath(sys.base_prefix).startswith(p + "/") for p in read_only
    )
    assert str(Path.home()) not in read_only  # the real HOME never comes in whole
    assert singles(args, "--remount-ro")[-1] == "/"  # the jail's root is read-only
    assert (conversation / "home").is_dir() and (conversation / "tmp").is_dir()
    # A symlinked system folder stays a symlink.
    if os.path.islink("/bin"):
        assert (os.readlink("/bin"), "/bin") in pairs(args, "--symlink")


def test_the_tools_own_folders_and_pid_1(conversation: Path, tmp_path: Path) -> None:
    jail = Confiner(spec(), workspace=conversation / "workspace", directory=conversation)
    scripts, sockets = tmp_path / "scripts", tmp_path / "sockets"
    args = jail.command(
        ["x"], cwd=tmp_path, read_only=[scripts], read_write=[sockets], session_leader=True
    )
    assert (str(scripts), str(scripts)) in pairs(args, "--ro-bind")
    assert (str(sockets), str(sockets)) in pairs(args, "--bind")
    # A session of its own inside the jail, started by the runtime's Python.
    assert args[args.index("--") + 1 :][:2] == [sys.executable, "-I"]
    assert args[-1] == "x" and "os.setsid()" in args[-2]
    # Mount points of the tool folders are made before the root turns read-only.
    assert position(args, "--bind", str(sockets)) < position(args, "--remount-ro", "/")


def test_hidden_paths_are_masked_where_a_mount_shows_them(tmp_path: Path) -> None:
    """A workspace holding the data dir (a workspace that is the whole HOME): the data dir
    is masked, and the conversation's own home comes back on top of the mask."""
    home = tmp_path / "home"
    data = home / ".local" / "convo"
    conversation = data / "conversations" / "c1"
    conversation.mkdir(parents=True)
    (home / ".ssh").mkdir()
    (home / ".netrc").write_text("machine x password y\n")
    jail = Confiner(
        spec(hidden_paths=[str(data), str(home / ".ssh"), str(home / ".netrc"), "/nonexistent"]),
        workspace=home,
        directory=conversation,
    )
    args = jail.command(["x"], cwd=home)
    assert str(data) in singles(args, "--tmpfs") and str(home / ".ssh") in singles(args, "--tmpfs")
    assert ("/dev/null", str(home / ".netrc")) in pairs(args, "--ro-bind")
    assert "/nonexistent" not in args
    mask = position(args, "--tmpfs", str(data))
    assert position(args, "--bind", str(home)) < mask  # the workspace, then its mask
    own_home = position(args, "--bind", str(conversation / "home"))
    assert mask < own_home < position(args, "--remount-ro", str(data))
    event = jail.event()
    assert {"path": str(data), "mode": "hidden", "source": None} in [
        m.model_dump() for m in event.mounts
    ]


def test_a_workspace_inside_a_hidden_path_is_mounted_after_the_masks(conversation: Path) -> None:
    data = conversation.parent.parent
    workspace = conversation / "workspace"
    jail = Confiner(
        spec(hidden_paths=[str(data)], read_only_paths=[str(data.parent)]),
        workspace=workspace,
        directory=conversation,
    )
    args = jail.command(["x"], cwd=workspace)
    assert position(args, "--tmpfs", str(data)) < position(args, "--bind", str(workspace))


def test_the_network(conversation: Path) -> None:
    workspace = conversation / "workspace"
    off = Confiner(spec(), workspace=workspace, directory=conversation, network=False)
    assert "--unshare-net" in off.command(["x"], cwd=workspace)
    assert (off.network, off.network_off_by) == (False, "conversation")
    assert "network is off" in off.instructions()  # the agent is told, in its prompt
    server = Confiner(spec(network=False), workspace=workspace, directory=conversation)
    assert (server.network, server.network_off_by) == (False, "server")
    assert "network off (by the server)" in server.event().message
    # Only the jail can cut it: a container (or no jail) says it stays on.
    container = Confiner(
        ConfinementSpec(mechanism="container"),
        workspace=workspace,
        directory=conversation,
        network=False,
    )
    assert container.command(["x"], cwd=workspace) == ["x"]
    event = container.event()
    assert event.confined and event.network and "stays on" in event.message


def test_unconfined_says_so_and_changes_nothing(conversation: Path) -> None:
    jail = Confiner(
        ConfinementSpec(reason="bubblewrap is not installed here"),
        workspace=conversation / "workspace",
        directory=conversation,
    )
    assert jail.command(["bash"], cwd=conversation) == ["bash"]
    assert jail.instructions() == ""
    assert jail.environment({"HOME": "/root"})["HOME"] == "/root"
    event = jail.event()
    assert not event.confined and event.mechanism == "none"
    assert "NOT CONFINED" in event.message and "not installed" in event.message
    assert not (conversation / "home").exists()
    assert not Confiner(None, workspace=conversation, directory=conversation).event().confined


def test_the_tools_environment(conversation: Path) -> None:
    jail = Confiner(
        spec(hidden_environment=["JUPYTER_TOKEN", "JUPYTERHUB_*"]),
        workspace=conversation / "workspace",
        directory=conversation,
    )
    env = jail.environment(
        {
            "PATH": "/usr/bin",
            "HOME": "/root",
            "JUPYTER_TOKEN": "t",
            "JUPYTERHUB_API_TOKEN": "h",
            "XDG_RUNTIME_DIR": "/run/user/0",
            "TMPDIR": "/var/tmp/x",
        }
    )
    assert env == {
        "PATH": "/usr/bin",
        "HOME": str(conversation / "home"),
        "TMPDIR": "/tmp",
    }


def test_probe_names_a_missing_bubblewrap(tmp_path: Path) -> None:
    path, reason = probe(str(tmp_path / "no-bwrap"))
    assert path is None
    assert "is not installed" in reason and "no-bwrap" in reason


def test_the_policy_without_bubblewrap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    policy = Confinement(bwrap_path=str(tmp_path / "missing-bwrap"))
    with caplog.at_level(logging.WARNING):
        policy.log.propagate = True
        policy.announce()
    assert "UNCONFINED" in caplog.text and "c.Confinement.required" in caplog.text
    assert policy.refusal() is None
    made = policy.spec(tmp_path / "data")
    assert made.mechanism == "none" and "missing-bwrap" in made.reason
    policy.required = True
    refusal = policy.refusal()
    assert refusal is not None and "c.Confinement.required" in refusal
    assert "apt install bubblewrap" in refusal


def test_the_policy_disabled(tmp_path: Path) -> None:
    policy = Confinement(enabled=False, required=True)
    assert not policy.usable
    assert "disabled" in (policy.refusal() or "")
    policy.enabled = True  # checked again after a change
    policy.bwrap_path = str(tmp_path / "gone")
    assert "is not installed" in policy.check()[1]


def test_the_policy_hides_the_data_dir_and_jupyter_runtime_dir(tmp_path: Path) -> None:
    from jupyter_core.paths import jupyter_runtime_dir

    made = Confinement(bwrap_path=str(tmp_path / "gone")).spec(tmp_path / "data")
    assert made.hidden_paths[:2] == [str(tmp_path / "data"), os.path.abspath(jupyter_runtime_dir())]
    assert "~/.ssh" in made.hidden_paths and "OPENAI_API_KEY" in made.hidden_environment


def test_a_kernel_specs_interpreter_is_mounted_when_the_jail_lacks_it(
    conversation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "conda" / "envs" / "analysis"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    jail = Confiner(spec(), workspace=conversation / "workspace", directory=conversation)
    assert jail.interpreter_paths(str(env / "bin" / "python")) == [env]
    assert jail.interpreter_paths("/usr/bin/python3") == []  # /usr is mounted already
    assert jail.interpreter_paths(str(home / "bin" / "python")) == []  # would expose HOME
    assert jail.interpreter_paths("python3") == []
    unconfined = Confiner(None, workspace=conversation / "workspace", directory=conversation)
    assert unconfined.interpreter_paths(str(env / "bin" / "python")) == []


def test_a_hidden_symlink_is_masked_where_it_leads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = tmp_path / "elsewhere" / "ssh"
    keys.mkdir(parents=True)
    (home / ".ssh").parent.mkdir(parents=True)
    (home / ".ssh").symlink_to(keys)
    conversation = tmp_path / "data" / "c1"
    jail = Confiner(
        spec(hidden_paths=[str(home / ".ssh")], read_only_paths=[str(tmp_path / "elsewhere")]),
        workspace=home,
        directory=conversation,
    )
    args = jail.command(["x"], cwd=home)
    assert str(keys) in singles(args, "--tmpfs")
    assert str(home / ".ssh") not in args
