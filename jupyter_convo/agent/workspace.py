"""The workspace: the one directory an agent may touch. Every path goes through here."""

from __future__ import annotations

import os
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
        rel = path.resolve().relative_to(self.root).as_posix()
        return rel or "."
