"""Workspace file routes' logic: list, read text, accept uploads, zip it all.

Every path goes through ``Workspace.resolve`` so no request can reach outside the root, and
every file read for a caller through ``Workspace.open_confined`` (no hard link, FIFO,
device or bind-mounted file is served). The runtime's routes and the server's routes for a
stopped conversation both use these functions. Kept free of HTTP so it can be tested and
reused on its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..agent.workspace import NotAFile, UnsafeFile, Workspace, WorkspaceError

log = logging.getLogger(__name__)

# Bytes looked at to tell text from binary; NUL bytes in here mean binary.
BINARY_SNIFF_BYTES = 8192
# ``select-file`` shows files to people; beyond this a download is the right tool.
MAX_TEXT_FILE_BYTES = 20 * 1024 * 1024
COPY_CHUNK = 1024 * 1024


class WorkspaceFileError(Exception):
    """A file request that cannot be served; ``status`` is the HTTP answer."""

    status = 400


class FileMissing(WorkspaceFileError):
    status = 404


class BinaryFile(WorkspaceFileError):
    status = 415


class FileTooLarge(WorkspaceFileError):
    status = 413


class FileRefused(WorkspaceFileError):
    """A file inside the workspace that is never served (hard link, FIFO, device...)."""

    status = 403


def _resolve(workspace: Workspace, path: str) -> Path:
    try:
        return workspace.resolve(path)
    except WorkspaceError as exc:
        raise WorkspaceFileError(str(exc)) from exc


def list_entries(workspace: Workspace, path: str | None = None) -> list[str]:
    """The entries of a directory, as workspace-relative paths; directories end in ``/``.

    Directories come first, then files, each sorted by name.
    """
    directory = _resolve(workspace, path or ".")
    if not directory.exists():
        raise FileMissing(f"directory {path!r} does not exist")
    if not directory.is_dir():
        raise WorkspaceFileError(f"{path!r} is a file, not a directory")
    if not workspace.on_root_mount(directory):
        raise FileRefused(f"directory {path!r} is on another mount than the workspace")
    dirs: list[str] = []
    files: list[str] = []
    for child in directory.iterdir():
        rel = _display_path(workspace, directory, child.name)
        if child.is_dir():
            dirs.append(rel + "/")
        else:
            files.append(rel)
    return sorted(dirs) + sorted(files)


def _display_path(workspace: Workspace, directory: Path, name: str) -> str:
    # The child itself may be a symlink leading outside: show where it sits, not where it
    # points, so listing never reveals outside paths (reading it is still refused).
    base = workspace.relative(directory)
    return name if base == "." else f"{base}/{name}"


def read_text(workspace: Workspace, file: str) -> str:
    """A text file's content; ``BinaryFile`` for anything that is not UTF-8 text."""
    if not file:
        raise WorkspaceFileError("the 'file' parameter is empty")
    try:
        handle = workspace.open_confined(file)
    except FileNotFoundError:
        raise FileMissing(f"file {file!r} does not exist") from None
    except NotAFile:
        raise WorkspaceFileError(f"{file!r} is a directory; use list-files") from None
    except UnsafeFile as exc:
        raise FileRefused(str(exc)) from None
    except WorkspaceError as exc:
        raise WorkspaceFileError(str(exc)) from None
    except OSError as exc:
        raise WorkspaceFileError(f"file {file!r} cannot be read: {exc.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_TEXT_FILE_BYTES:
            raise FileTooLarge(
                f"file {file!r} has {size} bytes; at most {MAX_TEXT_FILE_BYTES} can be shown"
            )
        data = handle.read(MAX_TEXT_FILE_BYTES + 1)
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise FileTooLarge(f"file {file!r} grew past {MAX_TEXT_FILE_BYTES} bytes while read")
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise BinaryFile(f"file {file!r} is binary")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BinaryFile(f"file {file!r} is not UTF-8 text") from exc


@dataclass
class UploadResult:
    """What ``save_uploads`` did: the written paths and the refused names with reasons."""

    uploaded: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, name: str, reason: str) -> None:
        log.info("upload of %r skipped: %s", name, reason)
        self.skipped.append({"name": name, "reason": reason})


def _upload_target(workspace: Workspace, name: str) -> Path:
    if not name or not name.strip():
        raise WorkspaceFileError("the file name is empty")
    if name.endswith(("/", "\\")):
        raise WorkspaceFileError("the file name names a directory")
    target = _resolve(workspace, name)
    if target == workspace.root:
        raise WorkspaceFileError("the file name names the workspace itself")
    if target.is_dir():
        raise WorkspaceFileError("a directory of that name exists")
    return target


def write_atomically(target: Path, content: bytes) -> None:
    """Write ``content`` to a temp file beside ``target`` and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # A short temp name: the target's own name may already be as long as names can be.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def save_uploads(workspace: Workspace, files: Iterable[tuple[str, bytes]]) -> UploadResult:
    """Write each ``(name, content)``; names may hold subdirectories, never leave the root.

    Each file lands whole or not at all (temp file + rename). A refused or failed file is
    reported in ``skipped`` and the others still go in.
    """
    result = UploadResult()
    for name, content in files:
        try:
            target = _upload_target(workspace, name)
            write_atomically(target, content)
        except WorkspaceFileError as exc:
            result.skip(name, str(exc))
            continue
        except OSError as exc:
            result.skip(name, f"could not be written: {exc.strerror or exc}")
            continue
        result.uploaded.append(workspace.relative(target))
    return result


def _zip_members(workspace: Workspace) -> Iterator[tuple[str, str]]:
    """(workspace-relative name, archive name) of every file under the root, sorted;
    which of them may really be served is ``open_confined``'s decision."""
    for dirpath, dirnames, filenames in os.walk(workspace.root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(workspace.root).as_posix()
            yield rel, rel


def write_zip(workspace: Workspace, out: BinaryIO) -> int:
    """Write the workspace as a zip archive into ``out``; returns the number of files.

    Files ``open_confined`` refuses (links leading out, hard links, FIFOs, devices, other
    mounts) are left out and logged.
    """
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel, arcname in _zip_members(workspace):
            try:
                with workspace.open_confined(rel) as source:
                    info = _zip_info(arcname, os.fstat(source.fileno()))
                    with archive.open(info, "w") as member:
                        shutil.copyfileobj(source, member, COPY_CHUNK)
            except (WorkspaceError, OSError) as exc:
                # Refused, or removed / unreadable mid-walk: it must not spoil the archive.
                log.info("workspace.zip leaves out %s: %s", arcname, exc)
                continue
            count += 1
    return count


def _zip_info(arcname: str, info: os.stat_result) -> zipfile.ZipInfo:
    """The entry for an opened file (what ``ZipFile.write`` makes from a path)."""
    when = time.localtime(info.st_mtime)[:6]
    entry = zipfile.ZipInfo(arcname, when if when[0] >= 1980 else (1980, 1, 1, 0, 0, 0))
    entry.external_attr = (info.st_mode & 0xFFFF) << 16
    entry.file_size = info.st_size
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry
