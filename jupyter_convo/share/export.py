"""Export a conversation as one zip that anyone can import, inspect, replay or re-export.

Every file goes through the server's ``SecretRegistry`` on its way into the zip (API keys,
tokens, registered secrets become ``<secret-hidden>``) and the finished members are scanned
once more: an export that would still hold a secret is refused, never written. Binary
workspace files cannot be redacted, so one holding a secret is left out and listed.
Entries carry a fixed date, so the same conversation always exports to the same members.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import stat
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from .._version import __version__
from ..agent.cassette import CassetteEntry, CassetteError, complete_lines, iter_entries
from ..agent.workspace import Workspace, WorkspaceError
from ..events.redact import SecretRegistry
from ..events.schema import LLMCallEvent, TitleEvent, event_from_json
from ..store.models import ConversationMetadata
from ..store.settings import known_secrets
from .format import (
    CASSETTE_FILE,
    EVENTS_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    META_FILE,
    WORKSPACE_PREFIX,
    EnvironmentInfo,
    FileEntry,
    LeftOutFile,
    Manifest,
    ModelInfo,
    SandboxInfo,
    WorkspaceSummary,
    sha256_hex,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
WORKSPACE_DIR = "workspace"
RUNTIME_RECORD = "runtime.json"
# Every member gets this date: the zip's bytes then depend on the content only.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
KEY_PACKAGES = (
    "jupyter-convo",
    "pydantic",
    "openai",
    "tornado",
    "jupyter_client",
    "ipykernel",
    "jupyter_server",
    "nbformat",
    "numpy",
    "pandas",
    "matplotlib",
)
# Folders that are caches or someone else's history, not the work: listed, never packed.
SKIPPED_FOLDERS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", "node_modules", ".venv"}
)


class ExportError(RuntimeError):
    """The conversation cannot be exported (missing, unreadable, or a secret would leak)."""


@dataclass(frozen=True)
class WorkspaceLimits:
    """How much of the workspace an export may carry."""

    max_bytes: int = 50 * MIB
    max_file_bytes: int = 20 * MIB


@dataclass
class _Member:
    name: str
    data: bytes


def contains_secret(data: bytes, secrets: SecretRegistry) -> bool:
    """True if ``data`` holds a registered secret (as UTF-8 text or as raw bytes)."""
    if not len(secrets) or not data:
        return False
    for text in (data.decode("utf-8", "surrogateescape"), data.decode("latin-1")):
        if secrets.redact(text) != text:
            return True
    return False


def export_conversation(
    conversation_dir: str | os.PathLike[str],
    target: str | os.PathLike[str] | IO[bytes],
    *,
    metadata: ConversationMetadata | None = None,
    secrets: SecretRegistry | None = None,
    include_workspace: bool = False,
    workspace: str | os.PathLike[str] | None = None,
    limits: WorkspaceLimits | None = None,
) -> Manifest:
    """Write the export zip of the conversation in ``conversation_dir`` to ``target``.

    ``metadata`` is the store's record (derived from the log when None); ``workspace``
    overrides where its files are (default: ``metadata.workspace``, else ``workspace/``).
    Returns the manifest written into the zip. Raises ``ExportError``.
    """
    directory = Path(conversation_dir)
    if not (directory / EVENTS_FILE).is_file():
        raise ExportError(f"no conversation at {directory} (it has no {EVENTS_FILE})")
    registry = secrets if secrets is not None else SecretRegistry()
    limits = limits or WorkspaceLimits()
    events_bytes = _complete_lines(directory / EVENTS_FILE)
    cassette_bytes = _complete_lines(directory / CASSETTE_FILE)
    meta = metadata or metadata_from_log(directory, events_bytes)
    workspace_root = _workspace_root(directory, meta, workspace)

    members = [
        _Member(META_FILE, _json_bytes(meta.model_dump(mode="json"))),
        _Member(EVENTS_FILE, events_bytes),
        _Member(CASSETTE_FILE, cassette_bytes),
    ]
    summary = WorkspaceSummary(
        included=include_workspace,
        root=str(workspace_root),
        max_bytes=limits.max_bytes if include_workspace else None,
    )
    for member in members:
        member.data = _redacted(member.name, member.data, registry)
    if include_workspace:
        members.extend(_workspace_members(workspace_root, limits, registry, summary))

    manifest = Manifest(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        jupyter_convo_version=__version__,
        exported_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        conversation_id=meta.id,
        title=meta.title,
        model=_model_info(cassette_bytes, meta),
        sandbox=_sandbox_info(directory, meta),
        environment=environment_info(),
        event_count=events_bytes.count(b"\n"),
        cassette_entries=cassette_bytes.count(b"\n"),
        workspace=summary,
        files={m.name: FileEntry(sha256=sha256_hex(m.data), size=len(m.data)) for m in members},
    )
    manifest_json = _json_bytes(manifest.model_dump(mode="json"))
    manifest_bytes = _redacted(MANIFEST_FILE, manifest_json, registry)
    members.append(_Member(MANIFEST_FILE, manifest_bytes))
    for member in members:
        if contains_secret(member.data, registry):
            raise ExportError(f"refusing to export: {member.name} still holds a secret")
    _write_zip(members, target)
    log.info(
        "Exported conversation %s: %d events, %d workspace files (%d left out)",
        meta.id,
        manifest.event_count,
        summary.files,
        len(summary.left_out),
    )
    return manifest


def export_bytes(conversation_dir: str | os.PathLike[str], **options: Any) -> bytes:
    """The export zip as bytes (for an HTTP download); options as ``export_conversation``."""
    buffer = io.BytesIO()
    export_conversation(conversation_dir, buffer, **options)
    return buffer.getvalue()


def metadata_from_log(directory: Path, events_bytes: bytes | None = None) -> ConversationMetadata:
    """Metadata for a conversation the store does not know: id, title, times and model."""
    if events_bytes is None:
        events_bytes = _complete_lines(directory / EVENTS_FILE)
    title = model = None
    first = last = None
    last_id = -1
    for line in events_bytes.splitlines():
        if not line.strip():
            continue
        try:
            event = event_from_json(line)
        except ValidationError:
            continue
        first = first or event.timestamp
        last = event.timestamp
        last_id = event.id
        if isinstance(event, TitleEvent):
            title = event.title
        elif isinstance(event, LLMCallEvent):
            model = event.model
    values: dict[str, Any] = {
        "id": directory.name,
        "title": title,
        "model": model,
        "last_event_id": last_id,
        "status": "STOPPED",
    }
    if first is not None and last is not None:
        values.update(created_at=first, updated_at=last)
    try:
        return ConversationMetadata.model_validate(values)
    except ValidationError as exc:
        raise ExportError(f"{directory.name!r} cannot be a conversation id: {exc}") from exc


def environment_info() -> EnvironmentInfo:
    """Python and the versions of the packages a run's results depend on."""
    packages: dict[str, str] = {}
    for name in KEY_PACKAGES:
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            packages[name] = importlib_metadata.version(name)
    return EnvironmentInfo(
        python=platform.python_version(),
        implementation=sys.implementation.name,
        platform=platform.platform(),
        packages=packages,
    )


# --- pieces ------------------------------------------------------------------------------


def _complete_lines(path: Path) -> bytes:
    """The file's bytes up to its last newline (a line being written is not ours yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise ExportError(f"cannot read {path.name}: {exc}") from exc
    return data[: data.rfind(b"\n") + 1]


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _redacted(name: str, data: bytes, secrets: SecretRegistry) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportError(f"{name} is not UTF-8 text") from exc
    return secrets.redact(text).encode("utf-8")


def _workspace_root(
    directory: Path, meta: ConversationMetadata, override: str | os.PathLike[str] | None
) -> Path:
    if override is not None:
        return Path(override)
    if meta.workspace:
        path = Path(meta.workspace).expanduser()
        return path if path.is_absolute() else directory / path
    return directory / WORKSPACE_DIR


def _model_info(cassette_bytes: bytes, meta: ConversationMetadata) -> ModelInfo:
    """Model, endpoint and parameters of the last LLM request (the store's model if none)."""
    last: CassetteEntry | None = None
    try:
        for last in iter_entries(complete_lines(cassette_bytes)):  # noqa: B007 - the last one
            pass
    except CassetteError as exc:
        log.warning("Cannot read the model from the cassette: %s", exc)
    if last is None:
        return ModelInfo(name=meta.model)
    request = last.request
    params = request.get("params")
    return ModelInfo(
        name=str(request.get("model") or meta.model or "") or None,
        base_url=request.get("base_url") if isinstance(request.get("base_url"), str) else None,
        parameters=dict(params) if isinstance(params, dict) else {},
    )


def _sandbox_info(directory: Path, meta: ConversationMetadata) -> SandboxInfo:
    """The sandbox kind and, for containers, the image id from the runtime's record."""
    record: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads((directory / RUNTIME_RECORD).read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            record = loaded
    image = record.get("image_id") or record.get("image")
    return SandboxInfo(
        kind=str(record.get("kind") or meta.sandbox),
        image_id=str(image) if image else None,
    )


def _walk(root: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every entry under ``root`` as (posix path, path, lstat), sorted, links not followed."""
    stack = [root]
    found: list[tuple[str, Path, os.stat_result]] = []
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("Cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            path = Path(entry.path)
            info = entry.stat(follow_symlinks=False)
            rel = path.relative_to(root).as_posix()
            if entry.is_dir(follow_symlinks=False) and entry.name not in SKIPPED_FOLDERS:
                stack.append(path)
            else:
                found.append((rel, path, info))
    yield from sorted(found, key=lambda item: item[0])


def _workspace_members(
    root: Path, limits: WorkspaceLimits, secrets: SecretRegistry, summary: WorkspaceSummary
) -> list[_Member]:
    """The workspace files that fit the limits, redacted; the rest listed in ``summary``."""
    members: list[_Member] = []
    if not root.is_dir():
        return members
    confined = Workspace(root)
    total = 0

    def leave_out(rel: str, size: int, reason: str) -> None:
        summary.left_out.append(LeftOutFile(path=secrets.redact(rel), size=size, reason=reason))

    for rel, _path, info in _walk(root):
        size = info.st_size
        if stat.S_ISDIR(info.st_mode):
            leave_out(rel + "/", 0, "cache or version-control folder")
            continue
        if not stat.S_ISREG(info.st_mode):
            leave_out(rel, 0, "symbolic link" if stat.S_ISLNK(info.st_mode) else "not a file")
            continue
        if size > limits.max_file_bytes:
            leave_out(rel, size, f"larger than the per-file limit of {limits.max_file_bytes} bytes")
            continue
        if total + size > limits.max_bytes:
            leave_out(rel, size, f"the workspace limit of {limits.max_bytes} bytes was reached")
            continue
        if contains_secret(rel.encode(), secrets):
            leave_out(secrets.redact(rel), size, "its name holds a secret")
            continue
        try:
            with confined.open_confined(rel) as handle:
                data = handle.read(limits.max_file_bytes + 1)
        except WorkspaceError as exc:  # a hard link, FIFO, device, another mount...
            leave_out(rel, size, str(exc))
            continue
        except OSError as exc:
            leave_out(rel, size, f"unreadable: {exc.strerror or exc}")
            continue
        if len(data) > limits.max_file_bytes:
            leave_out(rel, len(data), "it grew past the per-file limit while read")
            continue
        if contains_secret(data, secrets):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                leave_out(rel, size, "binary file holding a secret")
                continue
            data = secrets.redact(text).encode("utf-8")
            summary.redacted.append(rel)
        members.append(_Member(WORKSPACE_PREFIX + rel, data))
        total += len(data)
    summary.files = len(members)
    summary.bytes = total
    return members


def _write_zip(members: list[_Member], target: str | os.PathLike[str] | IO[bytes]) -> None:
    if not isinstance(target, (str, os.PathLike)):
        _zip_into(members, target)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            _zip_into(members, handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _zip_into(members: list[_Member], handle: IO[bytes]) -> None:
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for member in members:
            info = zipfile.ZipInfo(member.name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, member.data)


__all__ = [
    "ExportError",
    "WorkspaceLimits",
    "contains_secret",
    "environment_info",
    "export_bytes",
    "export_conversation",
    "known_secrets",
    "metadata_from_log",
]
