"""``Workspace.open_confined``: whatever link the agent made, only its own files are served.

Real files, links, FIFOs and device nodes in a temporary directory; the bind mount is made
in a private mount namespace (``unshare --mount``), so nothing outside the test sees it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from jupyter_convo.agent.workspace import (
    NotAFile,
    UnsafeFile,
    Workspace,
    WorkspaceError,
    check_path_length,
)
from jupyter_convo.runtime import workspace as workspace_files

SECRET = "data-dir-secret-value-1f2e3d"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Workspace, Path]:
    """A workspace and, beside it, a "data dir" holding a secret."""
    data = tmp_path / "data"
    data.mkdir()
    secret = data / "secrets.json"
    secret.write_text(SECRET)
    workspace = Workspace(tmp_path / "workspace")
    (workspace.root / "mine.txt").write_text("my own work\n")
    return workspace, secret


def read(workspace: Workspace, name: str) -> bytes:
    with workspace.open_confined(name) as handle:
        return handle.read()


def test_an_ordinary_file_is_served(layout: tuple[Workspace, Path]) -> None:
    workspace, _ = layout
    assert read(workspace, "mine.txt") == b"my own work\n"
    (workspace.root / "sub").mkdir()
    os.symlink("../mine.txt", workspace.root / "sub" / "inner-link")
    assert read(workspace, "sub/inner-link") == b"my own work\n"  # a link that stays inside


def test_a_hard_link_to_a_file_outside_is_refused(layout: tuple[Workspace, Path]) -> None:
    workspace, secret = layout
    os.link(secret, workspace.root / "notes.txt")
    with pytest.raises(UnsafeFile, match="2 hard links"):
        read(workspace, "notes.txt")
    with pytest.raises(workspace_files.FileRefused):
        workspace_files.read_text(workspace, "notes.txt")


def test_symlinks_and_proc_links_leading_out_are_refused(layout: tuple[Workspace, Path]) -> None:
    workspace, secret = layout
    os.symlink(secret, workspace.root / "direct")
    os.symlink(f"/proc/self/root{secret}", workspace.root / "through-proc")
    os.symlink(f"/proc/{os.getpid()}/cwd", workspace.root / "cwd")
    for name in ("direct", "through-proc", "cwd/secrets.json"):
        with pytest.raises(WorkspaceError, match="outside the workspace"):
            read(workspace, name)


def test_fifos_and_devices_are_refused_without_blocking(layout: tuple[Workspace, Path]) -> None:
    workspace, _ = layout
    os.mkfifo(workspace.root / "pipe")
    os.mknod(workspace.root / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    outcome: list[BaseException] = []

    def attempt() -> None:
        for name in ("pipe", "zero"):
            try:
                read(workspace, name)
            except BaseException as exc:
                outcome.append(exc)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "opening a FIFO blocked"
    assert [type(exc) for exc in outcome] == [UnsafeFile, UnsafeFile], outcome
    assert all("not a regular file" in str(exc) for exc in outcome)


def test_a_directory_is_not_a_file(layout: tuple[Workspace, Path]) -> None:
    workspace, _ = layout
    (workspace.root / "folder").mkdir()
    with pytest.raises(NotAFile):
        read(workspace, "folder")


def test_the_zip_leaves_out_every_unsafe_file(layout: tuple[Workspace, Path]) -> None:
    import io
    import zipfile

    workspace, secret = layout
    os.link(secret, workspace.root / "notes.txt")
    os.symlink(secret, workspace.root / "link.txt")
    os.mkfifo(workspace.root / "pipe")
    buffer = io.BytesIO()
    assert workspace_files.write_zip(workspace, buffer) == 1
    with zipfile.ZipFile(buffer) as archive:
        assert archive.namelist() == ["mine.txt"]
        assert SECRET.encode() not in archive.read("mine.txt")


def test_names_over_the_file_system_limits_are_refused(layout: tuple[Workspace, Path]) -> None:
    workspace, _ = layout
    with pytest.raises(WorkspaceError, match="at most 255 bytes"):
        workspace.resolve("a" * 256)
    with pytest.raises(WorkspaceError, match="at most 255 bytes"):
        check_path_length("ok/" + "é" * 128)  # 256 bytes in UTF-8
    with pytest.raises(WorkspaceError, match="at most 4096 bytes"):
        check_path_length("/".join(["d" * 200] * 21))
    check_path_length("a" * 255)  # the limit itself is fine


@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="a bind mount needs root and unshare(1) (util-linux) for a private mount namespace",
)
def test_a_bind_mounted_folder_is_neither_read_nor_listed(
    layout: tuple[Workspace, Path], tmp_path: Path
) -> None:
    workspace, secret = layout
    (workspace.root / "mounted").mkdir()
    mount = ["mount", "--bind", str(secret.parent), str(workspace.root / "mounted")]
    script = textwrap.dedent(
        f"""
        import subprocess, sys
        from jupyter_convo.agent.workspace import UnsafeFile, Workspace
        from jupyter_convo.runtime import workspace as files
        subprocess.run({mount!r}, check=True)
        workspace = Workspace({str(workspace.root)!r})
        try:
            workspace.open_confined("mounted/secrets.json")
        except UnsafeFile as exc:
            print("refused:", exc)
        else:
            sys.exit("served a file of a bind mount")
        try:
            files.list_entries(workspace, "mounted")
        except files.FileRefused as exc:
            print("listing refused:", exc)
        else:
            sys.exit("listed a bind mount")
        """
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "another mount" in done.stdout and "listing refused" in done.stdout
    assert not (workspace.root / "mounted" / "secrets.json").exists()  # only in that namespace
