"""What a replay starts from: a recorded run's events, LLM answers and workspace paths.

A source is an export zip, an unpacked export (a folder with ``manifest.json``, such as the
examples in ``notebooks/runs/``) or a conversation folder (``events.jsonl``, optionally an
``import.json`` left by an import). Exports are fully validated first (``importer``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..agent.cassette import Cassette, CassetteEntry, CassetteError
from ..events.schema import Event, ReplayMode, event_from_dict, event_from_json, event_to_dict
from ..store.models import ConversationMetadata
from .export import metadata_from_log
from .format import (
    CASSETTE_FILE,
    EVENTS_FILE,
    IMPORT_RECORD_FILE,
    MANIFEST_FILE,
    Manifest,
)
from .importer import ImportLimits, ShareFormatError, extract_export, validate_export_dir

log = logging.getLogger(__name__)

WORKSPACE_DIR = "workspace"


@dataclass
class ReplaySource:
    """A recorded run, ready to be replayed."""

    conversation_id: str | None
    events: list[Event]
    cassette: list[CassetteEntry]
    # Workspace paths of the recorded run: rewritten to the new workspace in actions and
    # turned into ``<workspace>`` when observations are compared.
    workspace_roots: list[str] = field(default_factory=list)
    metadata: ConversationMetadata | None = None
    manifest: Manifest | None = None

    @property
    def title(self) -> str | None:
        return self.metadata.title if self.metadata is not None else None


class ReplayRequest(BaseModel):
    """``CreateConversationRequest.replay``: what to replay and how.

    The source is a path (an export zip, an unpacked export or a conversation folder;
    relative paths are taken from the new conversation's folder) or the recorded run inline
    (``events`` and the final ``cassette`` entries, see ``source_to_wire``): inline sources
    reach runtimes in any sandbox, whatever the sandbox can see of the host's files.
    """

    model_config = ConfigDict(extra="forbid")

    mode: ReplayMode = "actions"
    source: str | None = Field(default=None, min_length=1)
    events: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    cassette: list[dict[str, Any]] = Field(default_factory=list)
    workspace_roots: list[str] = Field(default_factory=list)
    source_conversation_id: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ReplayRequest:
        if (self.source is None) == (self.events is None):
            raise ValueError("give either source (a path) or events (inline), not both")
        return self


def parse_replay_request(data: object) -> ReplayRequest:
    """Validate a ``replay`` dict; ``ValueError`` names the bad field."""
    try:
        return ReplayRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        prefix = f"replay.{where}" if where else "replay"
        raise ValueError(f"{prefix}: {error['msg']}") from None


def source_to_wire(source: ReplaySource, mode: ReplayMode) -> dict[str, Any]:
    """An inline ``replay`` request for ``source`` (cassette: final answers, no prompts)."""
    answers = [
        {**entry.model_dump(mode="json"), "request": {"model": entry.request.get("model")}}
        for entry in source.cassette
        if entry.final
    ]
    return ReplayRequest(
        mode=mode,
        events=[event_to_dict(event) for event in source.events],
        cassette=answers if mode == "cassette" else [],
        workspace_roots=source.workspace_roots,
        source_conversation_id=source.conversation_id,
    ).model_dump(mode="json", exclude_none=True)


def source_from_request(request: ReplayRequest, base: Path) -> ReplaySource:
    """The source a replay request names (a path under ``base`` or inline)."""
    if request.source is not None:
        path = Path(request.source).expanduser()
        return load_source(path if path.is_absolute() else base / path)
    events: list[Event] = []
    for index, data in enumerate(request.events or []):
        try:
            events.append(event_from_dict(data))
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise ShareFormatError(
                f"replay.events[{index}] is not a valid event: {problem}"
            ) from None
    entries: list[CassetteEntry] = []
    for index, data in enumerate(request.cassette):
        try:
            entries.append(CassetteEntry.model_validate(data))
        except ValidationError as exc:
            raise ShareFormatError(
                f"replay.cassette[{index}] is not a valid entry: {exc}"
            ) from None
    return ReplaySource(
        conversation_id=request.source_conversation_id,
        events=events,
        cassette=entries,
        workspace_roots=list(request.workspace_roots),
    )


def load_source(
    path: str | os.PathLike[str], *, limits: ImportLimits | None = None
) -> ReplaySource:
    """Load and check a replay source (see the module doc). Raises ``ShareFormatError``."""
    location = Path(path).expanduser()
    if not location.exists():
        raise ShareFormatError(f"{location} does not exist")
    if location.is_file():
        with tempfile.TemporaryDirectory(prefix="convo-replay-") as tmp:
            unpacked = Path(tmp) / "export"
            manifest, contents = extract_export(location, unpacked, limits)
            return _from_export(unpacked, manifest, contents.metadata)
    if (location / MANIFEST_FILE).is_file():
        manifest, contents = validate_export_dir(location)
        return _from_export(location, manifest, contents.metadata)
    if (location / EVENTS_FILE).is_file():
        return source_from_conversation(location)
    raise ShareFormatError(
        f"{location} is not an export zip, an unpacked export or a conversation folder"
    )


def _from_export(directory: Path, manifest: Manifest, meta: ConversationMetadata) -> ReplaySource:
    roots = [r for r in (manifest.workspace.root, meta.workspace) if r]
    return ReplaySource(
        conversation_id=meta.id,
        events=read_events(directory / EVENTS_FILE, strict=True),
        cassette=read_cassette(directory / CASSETTE_FILE),
        workspace_roots=roots,
        metadata=meta,
        manifest=manifest,
    )


def source_from_conversation(
    directory: str | os.PathLike[str], metadata: ConversationMetadata | None = None
) -> ReplaySource:
    """A conversation folder as a source; an imported one knows its original workspace."""
    folder = Path(directory)
    roots = [str(folder / WORKSPACE_DIR)]
    manifest: Manifest | None = None
    record = _import_record(folder)
    if record is not None:
        try:
            manifest = Manifest.model_validate(record.get("manifest"))
            original = ConversationMetadata.model_validate(record.get("meta"))
        except ValidationError as exc:
            log.warning("Ignoring the damaged %s of %s: %s", IMPORT_RECORD_FILE, folder, exc)
        else:
            roots += [r for r in (manifest.workspace.root, original.workspace) if r]
    meta = metadata or metadata_from_log(folder)
    if meta.workspace:
        roots.append(meta.workspace)
    return ReplaySource(
        conversation_id=meta.id,
        events=read_events(folder / EVENTS_FILE, strict=False),
        cassette=read_cassette(folder / CASSETTE_FILE),
        workspace_roots=roots,
        metadata=meta,
        manifest=manifest,
    )


def _import_record(folder: Path) -> dict[str, Any] | None:
    path = folder / IMPORT_RECORD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("Cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def read_events(path: Path, *, strict: bool) -> list[Event]:
    """Every complete event line; bad lines raise (``strict``) or are skipped with a warning."""
    events: list[Event] = []
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(event_from_json(line))
        except ValidationError as exc:
            if strict:
                raise ShareFormatError(f"{EVENTS_FILE} line {number} is not a valid event") from exc
            log.warning("Skipping %s line %d of %s: not a valid event", EVENTS_FILE, number, path)
    return events


def read_cassette(path: Path) -> list[CassetteEntry]:
    try:
        return Cassette(path).entries()
    except CassetteError as exc:
        raise ShareFormatError(str(exc)) from None


__all__ = [
    "ReplayRequest",
    "ReplaySource",
    "load_source",
    "parse_replay_request",
    "read_cassette",
    "read_events",
    "source_from_conversation",
    "source_from_request",
    "source_to_wire",
]
