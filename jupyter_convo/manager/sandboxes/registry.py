"""The sandbox kinds this installation offers: the ``jupyter_convo.sandboxes`` entry points.

A kind is a name (``process``, ``docker``, ...) mapped to a ``Sandbox`` subclass in any
installed package's ``pyproject.toml``::

    [project.entry-points."jupyter_convo.sandboxes"]
    k8s = "my_package.k8s:KubernetesSandbox"

Nothing else names the kinds: the server's setting, the API's list, the panel's form and
the magics all read this registry. Classes are imported only when one is asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from .base import Sandbox

log = logging.getLogger(__name__)

GROUP = "jupyter_convo.sandboxes"
DEFAULT_KIND = "process"


class UnknownSandboxKind(ValueError):
    """A sandbox kind no installed package registers."""


@dataclass(frozen=True)
class SandboxKindInfo:
    """What the API says about one kind."""

    kind: str
    description: str
    available: bool
    reason: str | None


def _entry_points() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def sandbox_kinds() -> list[str]:
    """The registered kinds, sorted (their classes are not imported)."""
    return sorted(_entry_points())


def load_sandbox_class(kind: str) -> type[Sandbox]:
    """The class registered for ``kind``; UnknownSandboxKind names the known ones."""
    entry = _entry_points().get(kind)
    if entry is None:
        known = ", ".join(sandbox_kinds()) or "none (reinstall jupyter-convo)"
        raise UnknownSandboxKind(f"unknown sandbox kind {kind!r}; installed kinds: {known}")
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Sandbox)):
        raise UnknownSandboxKind(
            f"sandbox kind {kind!r} ({entry.value}) is not a jupyter_convo Sandbox class"
        )
    return cls


def sandbox_classes() -> list[type[Sandbox]]:
    """Every registered class that imports (a broken plug-in is logged and left out)."""
    classes = []
    for kind in sandbox_kinds():
        try:
            classes.append(load_sandbox_class(kind))
        except Exception as exc:
            log.warning("sandbox kind %r cannot be loaded: %s", kind, exc)
    return classes


def describe_sandboxes() -> list[SandboxKindInfo]:
    """Each registered kind with its description and whether it can run here."""
    infos = []
    for kind in sandbox_kinds():
        try:
            cls = load_sandbox_class(kind)
        except Exception as exc:
            infos.append(SandboxKindInfo(kind, "", False, f"cannot be loaded: {exc}"))
            continue
        reason = cls.unavailable_reason()
        infos.append(SandboxKindInfo(kind, cls.description, reason is None, reason))
    return infos
