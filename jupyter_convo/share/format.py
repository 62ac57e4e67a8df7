"""The export format: the files of an export and the manifest that vouches for them.

An export is a zip (or the same files in a directory) holding ``meta.json`` (the
conversation's metadata), ``events.jsonl`` (the event log, byte for byte), ``cassette.jsonl``
(every LLM exchange), optionally ``workspace/...`` files, and ``manifest.json``: the format
version, where the run was made (versions, model, sandbox) and the sha256 of every other
file. Export writes it, import and replay check it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT_NAME = "jupyter-convo-export"
# 2: cassette lines may hold a request as a patch on the one before (agent/cassette.py).
FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = frozenset({1, 2})

MANIFEST_FILE = "manifest.json"
META_FILE = "meta.json"
EVENTS_FILE = "events.jsonl"
CASSETTE_FILE = "cassette.jsonl"
WORKSPACE_PREFIX = "workspace/"
REQUIRED_FILES = (META_FILE, EVENTS_FILE, CASSETTE_FILE)
# Written next to an imported conversation's log: where it came from (manifest and meta).
IMPORT_RECORD_FILE = "import.json"


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class LeftOutFile(BaseModel):
    """A workspace file that is not in the export, and why."""

    model_config = ConfigDict(extra="forbid")

    path: str
    size: int = 0
    reason: str


class WorkspaceSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    included: bool = False
    root: str | None = None  # the recorded run's workspace path (for replay normalisation)
    files: int = 0
    bytes: int = 0
    max_bytes: int | None = None
    left_out: list[LeftOutFile] = Field(default_factory=list)
    redacted: list[str] = Field(default_factory=list)


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    base_url: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class SandboxInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "process"
    image_id: str | None = None


class EnvironmentInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    python: str
    implementation: str = ""
    platform: str = ""
    packages: dict[str, str] = Field(default_factory=dict)


class Manifest(BaseModel):
    """``manifest.json``. Unknown fields are kept (a newer minor writer may add some)."""

    model_config = ConfigDict(extra="allow")

    format: str = FORMAT_NAME
    format_version: int
    jupyter_convo_version: str
    exported_at: str
    conversation_id: str
    title: str | None = None
    model: ModelInfo = Field(default_factory=ModelInfo)
    sandbox: SandboxInfo = Field(default_factory=SandboxInfo)
    environment: EnvironmentInfo
    event_count: int = 0
    cassette_entries: int = 0
    workspace: WorkspaceSummary = Field(default_factory=WorkspaceSummary)
    files: dict[str, FileEntry]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "CASSETTE_FILE",
    "EVENTS_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMPORT_RECORD_FILE",
    "MANIFEST_FILE",
    "META_FILE",
    "REQUIRED_FILES",
    "SUPPORTED_FORMAT_VERSIONS",
    "WORKSPACE_PREFIX",
    "EnvironmentInfo",
    "FileEntry",
    "LeftOutFile",
    "Manifest",
    "ModelInfo",
    "SandboxInfo",
    "WorkspaceSummary",
    "sha256_hex",
]


class ShareFormatError(ValueError):
    """The upload is not a valid export; the message names the problem."""


def parse_manifest(data: bytes) -> Manifest:
    """``manifest.json`` checked for format name and version."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShareFormatError(f"{MANIFEST_FILE} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ShareFormatError(f"{MANIFEST_FILE} is nested too deeply") from None
    if not isinstance(raw, dict):
        raise ShareFormatError(f"{MANIFEST_FILE} must hold a JSON object")
    if raw.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise ShareFormatError(f"{MANIFEST_FILE} is not a jupyter-convo export manifest")
    version = raw.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        known = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
        raise ShareFormatError(
            f"unknown format version {version!r} (this jupyter-convo reads version {known}); "
            "a newer jupyter-convo may read it"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ShareFormatError(f"{MANIFEST_FILE} is invalid: {first_error(exc)}") from None


def first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(root)"
    return f"{where}: {error['msg']}"
