"""The workspace: the one directory an agent may touch. Every path goes through here.

``resolve`` checks a path (symlinks followed) is inside; ``open_file``/``make_dirs``/
``remove_file`` then reach it one component at a time without following any symlink, so
a link swapped in after the check cannot lead out, and refuse regular files with other
hard links (another name, possibly outside, for the same data).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path


class WorkspaceError(ValueError):
    """A path that is malformed or leaves the workspace."""


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
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
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


def _link_error(exc: OSError, name: str, dir_fd: int) -> Exception:
    """A symlink met on the way becomes a ``WorkspaceError``; other errors stay."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
                return WorkspaceError(
                    f"{name!r} is a symbolic link that appeared after the path was checked; refused"
                )
    return exc
