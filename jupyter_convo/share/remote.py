"""Share operations through the server API, for the CLI and the ``%convo`` magics.

A replay source may be a conversation id or a local export (a zip, or an unpacked export
folder such as ``notebooks/runs/sales-summary``): a local export is imported first, so the
replay and its source are both browsable conversations on the server.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .format import MANIFEST_FILE
from .importer import ShareFormatError, parse_manifest

REPLAY_MODES = ("actions", "cassette")


def read_export(path: str | os.PathLike[str]) -> bytes:
    """The zip bytes of an export file, or of an unpacked export folder zipped again."""
    location = Path(path).expanduser()
    if location.is_file():
        return location.read_bytes()
    if (location / MANIFEST_FILE).is_file():
        # The manifest's files only: not what else the folder gained (an index a log
        # reader wrote beside events.jsonl, an editor's backup), which import refuses.
        manifest = parse_manifest((location / MANIFEST_FILE).read_bytes())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted({MANIFEST_FILE, *manifest.files}):
                item = location / name
                if item.is_file():
                    zf.write(item, name)
        return buffer.getvalue()
    raise ShareFormatError(f"{location} is neither an export zip nor an unpacked export folder")


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data`` whole or not at all (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_to_file(
    client: Any,
    conversation_id: str,
    path: str | os.PathLike[str] | None = None,
    *,
    workspace: bool = False,
) -> Path:
    """Download the export zip of ``conversation_id`` (default ``<id>.convo.zip``)."""
    data = client.request(
        "GET", f"conversations/{conversation_id}/export", params={"workspace": workspace}
    )
    target = Path(path) if path is not None else Path(f"{conversation_id}.convo.zip")
    return write_file(target.expanduser(), bytes(data))


def import_export(client: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Upload a local export; returns the new conversation's metadata."""
    data = read_export(path)
    result = client.request(
        "POST", "conversations/import", files=[("files", (Path(path).name + ".zip", data))]
    )
    return dict(result)


def replay_source_id(client: Any, source: str) -> str:
    """The conversation id to replay: ``source`` itself, or a local export imported now."""
    if Path(source).expanduser().exists():
        return str(import_export(client, source)["id"])
    return source


def start_replay(
    client: Any, source: str, *, mode: str = "actions", title: str | None = None
) -> dict[str, Any]:
    """Start a conversation replaying ``source``; returns its first start task."""
    if mode not in REPLAY_MODES:
        raise ValueError(f"replay mode must be one of {', '.join(REPLAY_MODES)}, not {mode!r}")
    options: dict[str, Any] = {
        "replay": {"source_conversation_id": replay_source_id(client, source), "mode": mode}
    }
    if title:
        options["title"] = title
    return dict(client.create(**options))


def notebook_to_file(
    client: Any, conversation_id: str, path: str | os.PathLike[str] | None = None
) -> Path:
    """Download the conversation as an ``.ipynb`` (default ``<id>.ipynb``)."""
    data = client.request("GET", f"conversations/{conversation_id}/notebook")
    target = Path(path) if path is not None else Path(f"{conversation_id}.ipynb")
    return write_file(target.expanduser(), bytes(data))


__all__ = [
    "REPLAY_MODES",
    "export_to_file",
    "import_export",
    "notebook_to_file",
    "read_export",
    "replay_source_id",
    "start_replay",
    "write_file",
]
