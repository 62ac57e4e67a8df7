"""Share operations for the CLI and the ``%convo`` magics, mostly through the server API.

A replay or notebook source may be a conversation id or a local export (a zip, or an
unpacked export folder such as ``notebooks/runs/sales-summary``): a local export is
imported first for a replay, so the replay and its source are both browsable conversations
on the server, and converted here for a notebook. A source that is neither (a file that
does not exist) is said as such, before the server is asked anything.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .format import MANIFEST_FILE, ShareFormatError, parse_manifest

REPLAY_MODES = ("actions", "cassette")
# The server's conversation ids (server.models.ID_PATTERN).
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def local_export_or_id(source: str) -> Path | str:
    """``source`` as a local export (a ``Path``) if it exists, else as a conversation id;
    a missing file (anything that cannot be an id) is a ``ShareFormatError`` saying so."""
    location = Path(source).expanduser()
    if location.exists():
        return location
    if CONVERSATION_ID.fullmatch(source):
        return source
    raise ShareFormatError(f"{source} does not exist (and is not a conversation id)")


def read_export(path: str | os.PathLike[str]) -> bytes:
    """The zip bytes of an export file, or of an unpacked export folder zipped again."""
    location = Path(path).expanduser()
    if not location.exists():
        raise ShareFormatError(f"{location} does not exist")
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
    found = local_export_or_id(source)
    if isinstance(found, Path):
        return str(import_export(client, found)["id"])
    return found


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


def notebook_from_export(
    source: str | os.PathLike[str], path: str | os.PathLike[str] | None = None
) -> tuple[str, Path]:
    """Convert a local export to an ``.ipynb`` without a server (default ``<id>.ipynb``);
    returns the conversation id (the export's name when it has none) and the file."""
    from .notebook import conversation_notebook, notebook_json
    from .source import load_source

    loaded = load_source(str(source))
    name = loaded.conversation_id or Path(source).stem
    notebook = conversation_notebook(
        loaded.events,
        conversation_id=loaded.conversation_id,
        title=loaded.title,
        workspace_roots=loaded.workspace_roots,
    )
    target = Path(path) if path is not None else Path(f"{name}.ipynb")
    return name, write_file(target.expanduser(), notebook_json(notebook).encode())


__all__ = [
    "REPLAY_MODES",
    "export_to_file",
    "import_export",
    "local_export_or_id",
    "notebook_from_export",
    "notebook_to_file",
    "read_export",
    "replay_source_id",
    "start_replay",
    "write_file",
]
