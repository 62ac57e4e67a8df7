"""The workspace: the one directory an agent may touch. Every path goes through here.

``Workspace.resolve`` confines a *path* (symlinks followed, then checked). Files that leave
the machine's trust boundary (the file routes, ``workspace.zip``, an export, skills) are
opened with ``Workspace.open_confined``, which also confines the *file*: whatever kind of
link the agent made inside its workspace (a symlink, a hard link to the data dir's secrets,
a bind mount, a FIFO or a device node), only a regular file that lives in the workspace
and nowhere else is served.

Tools running outside any jail (the file editor) write through ``open_file``/``make_dirs``/
``remove_file``: they reach a ``resolve``d path one component at a time without following
any symlink, so a link swapped in after the check cannot lead out, and refuse regular
files with other hard links (another name, possibly outside, for the same data).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

# POSIX limits of Linux file systems: a longer name is refused before the OS fails on it.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open until a writer comes
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_NOFOLLOW", 0)  # the resolved path is no link: one swapped in is refused
    | getattr(os, "O_CLOEXEC", 0)
)


class WorkspaceError(ValueError):
    """A path that is malformed or leaves the workspace."""


class UnsafeFile(WorkspaceError):
    """A file inside the workspace that may not be served: it is not a regular file that
    lives only there (a hard link, a FIFO or device, a file on another mount)."""


class NotAFile(WorkspaceError):
    """The path names a directory (or nothing readable as a file)."""


def check_path_length(raw: str) -> None:
    """``WorkspaceError`` for a name component over 255 bytes or a path over 4096 bytes
    (what Linux file systems accept), so the caller answers 400 rather than failing."""
    encoded = raw.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        raise WorkspaceError(
            f"path is {len(encoded)} bytes long; paths may be at most {MAX_PATH_BYTES} bytes"
        )
    for part in raw.split("/"):
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > MAX_NAME_BYTES:
            raise WorkspaceError(
                f"path component {part[:40]!r}... is {size} bytes long; a file or folder "
                f"name may be at most {MAX_NAME_BYTES} bytes"
            )


class Workspace:
    """A directory root with confinement: ``resolve`` refuses anything outside it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str | os.PathLike[str], *, must_exist: bool = False) -> Path:
        """The absolute path for ``path`` (relative to the root, or absolute inside it).

        Symlinks are followed before the check, so a link pointing outside is refused too.
        """
        raw = os.fspath(path)
        if "\x00" in raw:
            raise WorkspaceError("path contains a NUL byte")
        check_path_length(raw)
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            resolved = candidate.resolve()
        except OSError as exc:  # e.g. a symlink loop, ENAMETOOLONG after expansion
            raise WorkspaceError(f"path {raw!r} cannot be resolved: {exc.strerror}") from None
        if resolved != self.root and self.root not in resolved.parents:
            raise WorkspaceError(f"path {raw!r} is outside the workspace")
        if must_exist and not resolved.exists():
            raise WorkspaceError(f"path {raw!r} does not exist")
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` as shown to users and the LLM: relative to the root, with ``/``."""
        try:
            rel = path.resolve().relative_to(self.root).as_posix()
        except ValueError:  # a link changed since ``resolve``: name the path as checked
            rel = path.relative_to(self.root).as_posix()
        return rel or "."

    # --- files that leave the workspace -------------------------------------------------

    def open_confined(self, path: str | os.PathLike[str]) -> BinaryIO:
        """Open a file of the workspace for reading, if and only if it is safe to serve.

        Checked on the opened file itself (not on its name, which the agent may swap
        meanwhile): a regular file (not a FIFO, device or socket), with one link (a hard
        link's other name may be anywhere, e.g. the data dir's secrets; nothing can tell),
        really inside the root and on the root's mount (not under a bind mount). Raises
        ``FileNotFoundError`` when missing, ``NotAFile`` for a directory, ``UnsafeFile``
        when refused and ``WorkspaceError`` outside the workspace.
        """
        target = self.resolve(path)
        shown = os.fspath(path)
        try:
            fd = os.open(target, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFile(f"{shown!r} is a symbolic link that changed") from None
            if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
                raise UnsafeFile(f"{shown!r} is not a regular file") from None
            raise
        try:
            self._check_open_file(fd, shown)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def _check_open_file(self, fd: int, shown: str) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise NotAFile(f"{shown!r} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(
                f"{shown!r} is not a regular file (a FIFO, device or socket is never served)"
            )
        if info.st_nlink > 1:
            raise UnsafeFile(
                f"{shown!r} has {info.st_nlink} hard links; a file also reachable from "
                "outside the workspace is never served (copy it instead of linking it)"
            )
        real = _fd_path(fd)
        if real is not None and real != self.root and self.root not in real.parents:
            raise UnsafeFile(f"{shown!r} is outside the workspace")
        if not self._same_mount(fd, info):
            raise UnsafeFile(
                f"{shown!r} is on another mount than the workspace (a bind mount?); "
                "it is never served"
            )

    def _same_mount(self, fd: int, info: os.stat_result) -> bool:
        """Whether the open file is on the workspace root's mount: mount ids where /proc
        has them (they also tell bind mounts of one file system apart, and stay the same
        across an overlay's layers, whose files may report other devices); else devices."""
        try:
            root_fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            mount, root_mount = _mount_id(fd), _mount_id(root_fd)
            if mount is not None and root_mount is not None:
                return mount == root_mount
            return os.fstat(root_fd).st_dev == info.st_dev
        finally:
            os.close(root_fd)

    def on_root_mount(self, directory: Path) -> bool:
        """Whether ``directory`` (resolved, inside the root) is on the root's mount: a
        bind-mounted folder in the workspace is neither listed nor read."""
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            return self._same_mount(fd, os.fstat(fd))
        finally:
            os.close(fd)

    def safe_file(self, path: str | os.PathLike[str]) -> str | None:
        """Why ``path`` may not be served (``open_confined``'s refusal), or None if it may."""
        try:
            with self.open_confined(path):
                return None
        except WorkspaceError as exc:
            return str(exc)
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"

    # --- link-safe access (for tools running outside any jail: the file editor) ------------

    def _parts(self, path: Path) -> tuple[str, ...]:
        if path != self.root and self.root not in path.parents:
            raise WorkspaceError(f"path {str(path)!r} is outside the workspace")
        return path.relative_to(self.root).parts

    def _open_parent(self, parts: tuple[str, ...], *, create: bool = False) -> int:
        """A descriptor of the folder holding ``parts[-1]``, reached without symlinks
        (missing folders made when ``create``)."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                try:
                    child = os.open(
                        part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                    )
                except OSError as exc:
                    raise _link_error(exc, part, fd) from exc
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_file(self, path: Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
        """A descriptor of the workspace file ``path`` (a ``resolve``d path), opened with
        ``flags`` but never through a symlink, and refused when the file has other hard
        links. Do not pass ``O_TRUNC``: truncate after this check (``os.ftruncate``)."""
        parts = self._parts(path)
        if not parts:
            raise WorkspaceError("the workspace root is a directory")
        parent = self._open_parent(parts, create=bool(flags & os.O_CREAT))
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
        except OSError as exc:
            raise _link_error(exc, parts[-1], parent) from exc
        finally:
            os.close(parent)
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            os.close(fd)
            raise WorkspaceError(
                f"{self.relative_name(path)} has {info.st_nlink} hard links (other names for "
                "the same data, possibly outside the workspace); the file editor does not "
                "touch such files"
            )
        return fd

    def make_dirs(self, path: Path) -> None:
        """Make the folder ``path`` and its missing parents inside, through no symlink."""
        parts = self._parts(path)
        if parts:
            os.close(self._open_parent((*parts, ""), create=True))

    def remove_file(self, path: Path) -> None:
        """Remove the name ``path`` (a symlink is removed, never followed)."""
        parts = self._parts(path)
        if not parts:
            raise WorkspaceError("the workspace root is a directory")
        parent = self._open_parent(parts)
        try:
            os.unlink(parts[-1], dir_fd=parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)

    def relative_name(self, path: Path) -> str:
        """``path`` relative to the root, without resolving it again."""
        return path.relative_to(self.root).as_posix() or "."


def _fd_path(fd: int) -> Path | None:
    """Where an open file really is (Linux ``/proc/self/fd``), None where unknown."""
    with contextlib.suppress(OSError):
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    return None


def _mount_id(fd: int) -> str | None:
    """The mount id of an open file (Linux ``/proc/self/fdinfo``), None where unknown."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("mnt_id:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _link_error(exc: OSError, name: str, dir_fd: int) -> Exception:
    """A symlink met on the way becomes a ``WorkspaceError``; other errors stay."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
                return WorkspaceError(
                    f"{name!r} is a symbolic link that appeared after the path was checked; refused"
                )
    return exc
