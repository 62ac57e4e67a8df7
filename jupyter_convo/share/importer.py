"""Import an export zip: check everything, then unpack it as a new stopped conversation.

Nothing from the zip is trusted. Before a byte is written we check that it is a zip, that
every entry name stays inside the target folder (no absolute paths, ``..``, drive letters,
backslashes or links), that the declared sizes and compression ratios are not a zip bomb,
that the required files are there and the format version is one we read. While unpacking
into a private staging folder we count the bytes really produced (a lying header stops the
extraction) and hash them; then the hashes, the event schema, the cassette and the metadata
are checked. Only then does the folder become the conversation (with a new id if the id is
taken). Every refusal is a ``ShareFormatError`` naming the problem (an HTTP 400).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pydantic import ValidationError

from ..agent.cassette import CassetteError, iter_entries
from ..agent.workspace import WorkspaceError, check_path_length
from ..events.redact import SecretRegistry
from ..events.schema import ConversationStatus, event_from_json
from ..store.conversations import ConversationStore
from ..store.models import ConversationMetadata, new_id
from ..store.titles import MAX_TITLE_CHARS, clean_title
from .format import (
    CASSETTE_FILE,
    EVENTS_FILE,
    FORMAT_VERSION,
    IMPORT_RECORD_FILE,
    MANIFEST_FILE,
    META_FILE,
    REQUIRED_FILES,
    WORKSPACE_PREFIX,
    Manifest,
    ShareFormatError,
    first_error,
    parse_manifest,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 4 * MIB
_DRIVE = re.compile(r"^[A-Za-z]:")
_TOP_LEVEL = frozenset({MANIFEST_FILE, *REQUIRED_FILES})


class ImportTooLarge(ShareFormatError):
    """The export would unpack past a limit (a zip bomb, or just too big): HTTP 413."""


@dataclass(frozen=True)
class ImportLimits:
    """Bounds on what an import may unpack (zip bomb protection).

    ``max_ratio`` bounds both each entry above ``ratio_floor`` and the archive as a whole
    (everything it unpacks to, against its own size), so many small, highly compressed
    entries cannot add up to a bomb either.
    """

    max_total_bytes: int = 1024 * MIB
    max_ratio: float = 200.0  # uncompressed / compressed
    ratio_floor: int = 1 * MIB
    max_entries: int = 10_000

    def total_budget(self, archive_bytes: int | None) -> int:
        """How many bytes an archive of ``archive_bytes`` may unpack to."""
        if archive_bytes is None:
            return self.max_total_bytes
        by_ratio = max(self.ratio_floor, int(archive_bytes * self.max_ratio))
        return min(self.max_total_bytes, by_ratio)


@dataclass(frozen=True)
class ImportResult:
    conversation_id: str
    original_id: str
    directory: Path
    metadata: ConversationMetadata
    manifest: Manifest
    renamed: bool  # the original id was taken, so the conversation got a new one


Source = str | os.PathLike[str] | bytes | IO[bytes]


# --- checks on the zip's directory -------------------------------------------------------


def open_zip(source: Source) -> zipfile.ZipFile:
    """The zip behind ``source`` (a path, bytes or a binary file), or "not a zip file"."""
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise ShareFormatError(f"not a zip file: {exc}") from None
    except FileNotFoundError as exc:
        raise ShareFormatError(f"no such file: {exc.filename}") from None
    except IsADirectoryError:
        raise ShareFormatError("not a zip file: the path is a folder") from None


def check_entry_name(name: str) -> PurePosixPath:
    """The entry's relative path; raises if it would land outside the target folder."""
    problem = None
    if not name or "\x00" in name:
        problem = "has an empty or NUL-containing name"
    elif "\\" in name:
        problem = "uses backslashes"
    elif name.startswith("/") or _DRIVE.match(name):
        problem = "is an absolute path"
    else:
        parts = [p for p in name.rstrip("/").split("/")]
        if any(p in ("", ".", "..") for p in parts):
            problem = "has '..', '.' or empty path segments"
        else:
            try:
                check_path_length(name)
            except WorkspaceError as exc:
                raise ShareFormatError(
                    f"entry {name[:80]!r}... cannot be unpacked: {exc}"
                ) from None
    if problem is not None:
        raise ShareFormatError(f"entry {name!r} escapes the target folder: it {problem}")
    return PurePosixPath(name)


def _is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def archive_size(zf: zipfile.ZipFile) -> int | None:
    """The size of the zip file itself, when its file can tell."""
    handle: Any = zf.fp
    try:
        position = handle.tell()
        size = int(handle.seek(0, os.SEEK_END))
        handle.seek(position)
    except (AttributeError, OSError, ValueError):
        return None
    return size


def check_directory(
    zf: zipfile.ZipFile, limits: ImportLimits, budget: int | None = None
) -> list[zipfile.ZipInfo]:
    """Names, links, duplicates, counts, declared sizes and ratios; the file entries.

    ``budget``: the bytes the whole archive may unpack to (``ImportLimits.total_budget``).
    """
    budget = limits.max_total_bytes if budget is None else budget
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ImportTooLarge(
            f"zip bomb: {len(infos)} entries, more than the limit of {limits.max_entries}"
        )
    seen: set[str] = set()
    files: list[zipfile.ZipInfo] = []
    total = 0
    for info in infos:
        check_entry_name(info.filename)
        if _is_link(info):
            raise ShareFormatError(
                f"entry {info.filename!r} escapes the target folder: it is a symbolic link"
            )
        key = info.filename.rstrip("/")
        if key in seen:
            raise ShareFormatError(f"entry {info.filename!r} appears twice")
        seen.add(key)
        if info.is_dir():
            if not (info.filename + "/").startswith(WORKSPACE_PREFIX) and key != "workspace":
                raise ShareFormatError(f"unexpected folder {info.filename!r} in the export")
            continue
        if info.filename not in _TOP_LEVEL and not info.filename.startswith(WORKSPACE_PREFIX):
            raise ShareFormatError(f"unexpected file {info.filename!r} in the export")
        if info.file_size > limits.ratio_floor:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise ImportTooLarge(
                    f"zip bomb: {info.filename!r} expands {ratio:.0f} times "
                    f"(limit {limits.max_ratio:.0f})"
                )
        total += info.file_size
        if total > budget:
            raise ImportTooLarge(too_large_message(budget, limits))
        files.append(info)
    names = {info.filename for info in files}
    missing = [name for name in (MANIFEST_FILE, *REQUIRED_FILES) if name not in names]
    if missing:
        raise ShareFormatError(f"missing files: {', '.join(missing)}")
    return files


def too_large_message(budget: int, limits: ImportLimits) -> str:
    why = (
        f"the limit of {limits.max_total_bytes} bytes"
        if budget >= limits.max_total_bytes
        else f"{limits.max_ratio:.0f} times the size of the upload"
    )
    return f"zip bomb: the entries unpack to more than {budget} bytes ({why})"


# --- unpacking ------------------------------------------------------------------------------


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, sink: Callable[[bytes], object]
) -> tuple[str, int]:
    """Stream one entry into ``sink``; returns (sha256, size). Stops past ``limit`` bytes."""
    digest = hashlib.sha256()
    size = 0
    try:
        with zf.open(info) as member:
            while chunk := member.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ImportTooLarge(
                        f"zip bomb: {info.filename!r} unpacks to more bytes than allowed "
                        f"(at most {limit} bytes are left of the archive's budget)"
                    )
                if size > info.file_size:
                    raise ShareFormatError(
                        f"entry {info.filename!r} lies about its size: it unpacks to more "
                        f"than the {info.file_size} bytes it declares"
                    )
                digest.update(chunk)
                sink(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # A header that understates the size ends the read early and fails the CRC check.
        raise ShareFormatError(
            f"entry {info.filename!r} is damaged or lies about its size: {exc}"
        ) from None
    return digest.hexdigest(), size


def read_manifest(zf: zipfile.ZipFile, budget: int) -> Manifest:
    info = zf.getinfo(MANIFEST_FILE)
    buffer = bytearray()
    _read_member(zf, info, min(MAX_MANIFEST_BYTES, budget), buffer.extend)
    return parse_manifest(bytes(buffer))


def unpack(
    zf: zipfile.ZipFile,
    files: list[zipfile.ZipInfo],
    manifest: Manifest,
    staging: Path,
    budget: int,
) -> None:
    """Extract every file into ``staging`` counting the real bytes against ``budget`` as
    they stream out (a lying header stops the extraction), then compare the hashes."""
    listed = set(manifest.files)
    present = {info.filename for info in files if info.filename != MANIFEST_FILE}
    unlisted = sorted(present - listed)
    if unlisted:
        raise ShareFormatError(f"files not listed in the manifest: {', '.join(unlisted[:5])}")
    missing = sorted(listed - present)
    if missing:
        raise ShareFormatError(f"missing files: {', '.join(missing[:5])}")
    root = staging.resolve()
    for info in files:
        if info.filename == MANIFEST_FILE:
            continue
        target = (staging / info.filename).resolve()
        if root not in target.parents:
            raise ShareFormatError(f"entry {info.filename!r} escapes the target folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:
                digest, size = _read_member(zf, info, budget, out.write)
        except OSError as exc:
            raise ShareFormatError(
                f"entry {info.filename!r} cannot be unpacked: {exc.strerror or exc}"
            ) from None
        budget -= size
        expected = manifest.files[info.filename]
        if digest != expected.sha256 or size != expected.size:
            raise ShareFormatError(
                f"bad hash for {info.filename}: the file does not match its manifest entry"
            )


@dataclass(frozen=True)
class Contents:
    """What the checked files hold."""

    metadata: ConversationMetadata
    event_count: int
    last_event_id: int
    cassette_entries: int


def check_contents(staging: Path, format_version: int = FORMAT_VERSION) -> Contents:
    """The events, cassette and metadata must parse."""
    count, last_id = check_events(staging / EVENTS_FILE)
    entries = check_cassette(staging / CASSETTE_FILE, format_version)
    try:
        metadata = ConversationMetadata.model_validate_json((staging / META_FILE).read_bytes())
    except ValidationError as exc:
        raise ShareFormatError(f"{META_FILE} is invalid: {first_error(exc)}") from None
    if metadata.title is not None and len(metadata.title) > MAX_TITLE_CHARS:
        raise ShareFormatError(
            f"{META_FILE} is invalid: title: it has {len(metadata.title)} characters; "
            f"titles may have at most {MAX_TITLE_CHARS} (as in the API)"
        )
    return Contents(metadata, count, last_id, entries)


def check_events(path: Path) -> tuple[int, int]:
    """Every line is an event of our schema and ids increase; returns (count, last id)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise ShareFormatError(f"{EVENTS_FILE} does not end with a newline (a torn last line)")
    last_id = -1
    count = 0
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            raise ShareFormatError(f"{EVENTS_FILE} line {number} is empty")
        try:
            event = event_from_json(line)
        except ValidationError as exc:
            raise ShareFormatError(
                f"{EVENTS_FILE} line {number} is not a valid event: {first_error(exc)}"
            ) from None
        if event.id <= last_id:
            raise ShareFormatError(
                f"{EVENTS_FILE} line {number}: event id {event.id} does not follow {last_id}"
            )
        last_id = event.id
        count += 1
    return count, last_id


def check_cassette(path: Path, format_version: int = FORMAT_VERSION) -> int:
    """Every line is an entry (in a version 1 export, with its whole request); returns how
    many entries there are."""
    lines = path.read_bytes().splitlines()
    try:
        return sum(1 for _ in iter_entries(lines, CASSETTE_FILE, patches=format_version >= 2))
    except CassetteError as exc:
        raise ShareFormatError(
            f"{CASSETTE_FILE} line {exc.line} is not a valid entry: {exc.reason}"
        ) from None


def extract_export(
    source: Source, destination: Path, limits: ImportLimits | None = None
) -> tuple[Manifest, Contents]:
    """Validate ``source`` fully and unpack it into the new folder ``destination``."""
    limits = limits or ImportLimits()
    with open_zip(source) as zf:
        budget = limits.total_budget(archive_size(zf))
        files = check_directory(zf, limits, budget)
        manifest = read_manifest(zf, budget)
        destination.mkdir(parents=True, exist_ok=False)
        try:
            unpack(zf, files, manifest, destination, budget)
            contents = check_contents(destination, manifest.format_version)
        except BaseException:
            shutil.rmtree(destination, ignore_errors=True)
            raise
    return manifest, contents


def validate_export_dir(directory: Path) -> tuple[Manifest, Contents]:
    """An unpacked export (a folder with ``manifest.json``): hashes and contents checked."""
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ShareFormatError(f"missing files: {MANIFEST_FILE}")
    manifest = parse_manifest(manifest_path.read_bytes())
    missing = [n for n in (*REQUIRED_FILES, *manifest.files) if not (directory / n).is_file()]
    if missing:
        raise ShareFormatError(f"missing files: {', '.join(sorted(set(missing))[:5])}")
    root = directory.resolve()
    for name, entry in manifest.files.items():
        check_entry_name(name)
        path = (directory / name).resolve()
        if root not in path.parents:
            raise ShareFormatError(f"entry {name!r} escapes the target folder")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.sha256 or len(data) != entry.size:
            raise ShareFormatError(
                f"bad hash for {name}: the file does not match its manifest entry"
            )
    return manifest, check_contents(directory, manifest.format_version)


# --- the conversation -------------------------------------------------------------------------


def _id_taken(conversation_id: str, root: Path, store: ConversationStore | None) -> bool:
    if (root / conversation_id).exists():
        return True
    return store is not None and store.get(conversation_id) is not None


def import_conversation(
    source: Source,
    conversations_root: str | os.PathLike[str],
    *,
    store: ConversationStore | None = None,
    user_id: str | None = None,
    limits: ImportLimits | None = None,
    secrets: SecretRegistry | None = None,
) -> ImportResult:
    """Validate and unpack an export as a stopped conversation owned by ``user_id``.

    The events are kept byte for byte (a re-export gives the same ``events.jsonl``); the
    workspace files, if any, go into the conversation's ``workspace/``. The id is kept
    unless a conversation already has it. The title, as every stored title, hides
    ``secrets`` (``clean_title``). Raises ``ShareFormatError``.
    """
    root = Path(conversations_root)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".import-{uuid.uuid4().hex}"
    manifest, contents = extract_export(source, staging, limits)
    original = contents.metadata
    last_id = contents.last_event_id
    try:
        conversation_id = original.id
        renamed = _id_taken(conversation_id, root, store)
        if renamed:
            conversation_id = new_id()
        metadata = ConversationMetadata.model_validate(
            {
                **original.model_dump(),
                "id": conversation_id,
                "title": clean_title(original.title, secrets),
                "user_id": user_id,
                "status": ConversationStatus.STOPPED,
                "workspace": None,
                "last_event_id": last_id,
                "error": None,
                "tags": {**original.tags, "imported_from": original.id},
            }
        )
        record = {
            "manifest": manifest.model_dump(mode="json"),
            "meta": original.model_dump(mode="json"),
        }
        (staging / IMPORT_RECORD_FILE).write_text(
            json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (staging / MANIFEST_FILE).unlink(missing_ok=True)
        (staging / META_FILE).unlink(missing_ok=True)
        (staging / "workspace").mkdir(exist_ok=True)
        target = root / conversation_id
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if store is not None:
        try:
            store.create(metadata)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)
            raise
    log.info(
        "Imported conversation %s as %s (%d events)", original.id, conversation_id, last_id + 1
    )
    return ImportResult(
        conversation_id=conversation_id,
        original_id=original.id,
        directory=target,
        metadata=metadata,
        manifest=manifest,
        renamed=renamed,
    )


__all__ = [
    "Contents",
    "ImportLimits",
    "ImportResult",
    "ImportTooLarge",
    "ShareFormatError",
    "check_entry_name",
    "extract_export",
    "import_conversation",
    "open_zip",
    "parse_manifest",
    "validate_export_dir",
]
