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

from pydantic import ValidationError

from ..agent.cassette import Cassette, CassetteEntry, CassetteError
from ..events.schema import Event, event_from_json
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


def load_source(
    path: str | os.PathLike[str], *, limits: ImportLimits | None = None
) -> ReplaySource:
    """Load and check a replay source (see the module doc). Raises ``ShareFormatError``."""
    location = Path(path).expanduser()
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
    "ReplaySource",
    "load_source",
    "read_cassette",
    "read_events",
    "source_from_conversation",
]
