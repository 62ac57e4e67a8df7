"""Export and import: byte-identical round trips, no secret in any byte, every bad upload named."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from pydantic import SecretStr
from share_helpers import EXAMPLE, build_zip, manifest_of, read_zip

from jupyter_convo.agent.cassette import Cassette
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    CommandEvent,
    CommandOutputEvent,
    MessageEvent,
    TitleEvent,
)
from jupyter_convo.share.export import (
    WorkspaceLimits,
    export_bytes,
    export_conversation,
    known_secrets,
)
from jupyter_convo.share.format import (
    CASSETTE_FILE,
    EVENTS_FILE,
    FORMAT_VERSION,
    IMPORT_RECORD_FILE,
    MANIFEST_FILE,
    META_FILE,
)
from jupyter_convo.share.importer import ImportLimits, ShareFormatError, import_conversation
from jupyter_convo.share.remote import read_export
from jupyter_convo.store.conversations import ConversationStore
from jupyter_convo.store.models import ConversationMetadata
from jupyter_convo.store.settings import SettingsStore, SettingsUpdate

# --- round trip ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> ConversationStore:
    return ConversationStore(tmp_path / "convo.db")


def test_export_import_export_keeps_the_events_byte_for_byte(
    tmp_path: Path, example_dir: Path, example_zip: bytes, store: ConversationStore
) -> None:
    root = tmp_path / "conversations"
    first = import_conversation(example_zip, root, store=store, user_id="bob")

    original_events = (example_dir / EVENTS_FILE).read_bytes()
    assert first.conversation_id == "example-sales-summary" and not first.renamed
    assert (first.directory / EVENTS_FILE).read_bytes() == original_events
    assert (first.directory / "workspace" / "summary.txt").read_bytes() == (
        example_dir / "workspace" / "summary.txt"
    ).read_bytes()
    stored = store.get(first.conversation_id)
    assert stored is not None
    assert stored.user_id == "bob" and stored.status.value == "STOPPED"
    assert stored.title == "Example: monthly totals from sales.csv"
    assert stored.tags["imported_from"] == "example-sales-summary"
    assert stored.last_event_id == 39
    record = json.loads((first.directory / IMPORT_RECORD_FILE).read_text())
    assert record["meta"]["id"] == "example-sales-summary"

    again = export_bytes(first.directory, metadata=stored, include_workspace=True)
    members = read_zip(again)
    assert members[EVENTS_FILE] == original_events
    assert members[CASSETTE_FILE] == (example_dir / CASSETTE_FILE).read_bytes()
    manifest = manifest_of(members)
    assert manifest["format_version"] == FORMAT_VERSION
    files = manifest["files"]
    assert isinstance(files, dict)
    for name, entry in files.items():
        assert hashlib.sha256(members[name]).hexdigest() == entry["sha256"], name

    second = import_conversation(again, root, store=store, user_id="bob")
    assert second.renamed and second.conversation_id != first.conversation_id
    assert second.original_id == "example-sales-summary"
    assert (second.directory / EVENTS_FILE).read_bytes() == original_events
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [first.conversation_id, second.conversation_id]
    )


def test_the_same_conversation_exports_the_same_members(tmp_path: Path, example_zip: bytes) -> None:
    imported = import_conversation(example_zip, tmp_path / "conversations")
    one = read_zip(export_bytes(imported.directory, include_workspace=True))
    two = read_zip(export_bytes(imported.directory, include_workspace=True))
    assert one.keys() == two.keys()
    for name in one:
        if name != MANIFEST_FILE:
            assert one[name] == two[name], name
    manifest = manifest_of(one)
    assert manifest["conversation_id"] == "example-sales-summary"
    assert manifest["model"] == {
        "name": "scripted-model",
        "base_url": manifest["model"]["base_url"],  # type: ignore[index]
        "parameters": {"max_tokens": None, "stream": True, "temperature": 0.0},
    }
    environment = manifest["environment"]
    assert isinstance(environment, dict)
    assert environment["python"] and "pydantic" in environment["packages"]
    assert manifest["sandbox"] == {"kind": "process", "image_id": None}


def test_export_writes_a_zip_file_atomically(tmp_path: Path, example_zip: bytes) -> None:
    imported = import_conversation(example_zip, tmp_path / "conversations")
    target = tmp_path / "out" / "run.zip"
    manifest = export_conversation(imported.directory, target)
    assert zipfile.is_zipfile(target)
    assert manifest.workspace.included is False
    assert [p.name for p in target.parent.iterdir()] == ["run.zip"]


# --- secrets -----------------------------------------------------------------------------------

API_KEY = "sk-live-planted-api-key-0123456789"
TOKEN = "ghp_plantedGithubToken987654321"
ENV_KEY = "env-planted-key-ABCDEFGH"
SESSION_KEY = "session-planted-key-ZYXWVUT"
UNICODE_SECRET = "pässwörd-geheim-ü-☃"
SECRETS = (API_KEY, TOKEN, ENV_KEY, SESSION_KEY, UNICODE_SECRET)


def spellings(secret: str) -> list[bytes]:
    """Every way the secret could appear in a file: UTF-8, JSON-escaped, Latin-1 if possible."""
    forms = {secret.encode(), json.dumps(secret)[1:-1].encode()}
    with contextlib.suppress(UnicodeEncodeError):
        forms.add(secret.encode("latin-1"))
    return sorted(forms)


def plant_conversation(directory: Path) -> None:
    """A conversation whose files hold the secrets in clear (no redaction on the way in)."""
    log = EventLog(directory / EVENTS_FILE)
    log.append(MessageEvent(source="user", text=f"use the key {API_KEY} and {UNICODE_SECRET}"))
    log.append(TitleEvent(title=f"about {TOKEN}"))
    command = log.append(CommandEvent(command=f"export GITHUB_TOKEN={TOKEN}; echo {ENV_KEY}"))
    log.append(CommandOutputEvent(cause=command.id, output=f"{ENV_KEY}\n{SESSION_KEY}\n"))
    log.close()
    cassette = Cassette(directory / CASSETTE_FILE)
    cassette.record(
        {"model": "m", "messages": [{"role": "user", "content": f"key {API_KEY}"}]},
        {"content": f"I see {TOKEN} and {UNICODE_SECRET}", "tool_calls": []},
        None,
        0.1,
    )
    cassette.close()
    workspace = directory / "workspace"
    (workspace / ".git").mkdir(parents=True)
    (workspace / ".git" / "config").write_text(f"token = {TOKEN}\n")
    (workspace / "notes.txt").write_text(f"API_KEY={API_KEY}\npassword={UNICODE_SECRET}\n")
    (workspace / "blob.bin").write_bytes(b"\x00\xff\xfe" + TOKEN.encode() + b"\x00\x81")
    (workspace / "clean.csv").write_text("a,b\n1,2\n")
    (workspace / "big.bin").write_bytes(b"\x00" * 5000)
    os.symlink("/etc/hostname", workspace / "link")
    (directory / "runtime.json").write_text(
        json.dumps({"kind": "docker", "image_id": "sha256:abc", "token": TOKEN})
    )


def test_no_planted_secret_survives_in_any_byte_of_the_zip(tmp_path: Path) -> None:
    directory = tmp_path / "conversations" / "planted"
    plant_conversation(directory)
    settings = SettingsStore(tmp_path)
    settings.update(
        "alice",
        SettingsUpdate(
            llm_api_key=SecretStr(API_KEY),
            secrets={"GITHUB_TOKEN": SecretStr(TOKEN), "PASSWORD": SecretStr(UNICODE_SECRET)},
        ),
    )
    registry = known_secrets(
        settings_store=settings,
        user_ids=["alice"],
        extra=[SESSION_KEY],
        environ={"JUPYTER_CONVO_LLM_API_KEY": ENV_KEY, "HOME": "/home/alice"},
    )
    metadata = ConversationMetadata(id="planted", title=f"with {API_KEY}", user_id="alice")
    data = export_bytes(
        directory,
        metadata=metadata,
        secrets=registry,
        include_workspace=True,
        limits=WorkspaceLimits(max_file_bytes=4000),
    )

    members = read_zip(data)
    for secret in SECRETS:
        for form in spellings(secret):
            assert form not in data, f"{secret!r} in the raw zip"
            for name, content in members.items():
                assert form not in content, f"{secret!r} ({form!r}) in {name}"

    assert "<secret-hidden>" in members[EVENTS_FILE].decode()
    assert "<secret-hidden>" in members[CASSETTE_FILE].decode()
    assert members["workspace/notes.txt"].decode() == (
        "API_KEY=<secret-hidden>\npassword=<secret-hidden>\n"
    )
    assert members["workspace/clean.csv"] == b"a,b\n1,2\n"
    manifest = manifest_of(members)
    workspace = manifest["workspace"]
    assert isinstance(workspace, dict)
    left_out = {item["path"]: item["reason"] for item in workspace["left_out"]}
    assert left_out["blob.bin"] == "binary file holding a secret"
    assert "per-file limit" in left_out["big.bin"]
    assert left_out["link"] == "symbolic link"
    assert left_out[".git/"] == "cache or version-control folder"
    assert workspace["redacted"] == ["notes.txt"]
    assert sorted(n for n in members if n.startswith("workspace/")) == [
        "workspace/clean.csv",
        "workspace/notes.txt",
    ]
    assert manifest["sandbox"] == {"kind": "docker", "image_id": "sha256:abc"}
    assert json.loads(members[META_FILE])["title"] == "with <secret-hidden>"


def test_the_workspace_size_cap_lists_what_was_left_out(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    EventLog(directory / EVENTS_FILE).close()
    for name in ("a.txt", "b.txt", "c.txt"):
        (directory / "workspace").mkdir(exist_ok=True)
        (directory / "workspace" / name).write_text(name * 100)
    members = read_zip(
        export_bytes(directory, include_workspace=True, limits=WorkspaceLimits(max_bytes=1000))
    )
    workspace = manifest_of(members)["workspace"]
    assert isinstance(workspace, dict)
    assert workspace["files"] == 2 and workspace["bytes"] == 1000
    assert [i["path"] for i in workspace["left_out"]] == ["c.txt"]
    assert "workspace limit" in workspace["left_out"][0]["reason"]


# --- malformed imports ---------------------------------------------------------------------


def rehash(members: dict[str, bytes]) -> dict[str, bytes]:
    """Members with the manifest's hashes made to match (to reach the later checks)."""
    manifest = manifest_of(members)
    manifest["files"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in members.items()
        if name != MANIFEST_FILE
    }
    return {**members, MANIFEST_FILE: json.dumps(manifest).encode()}


def assert_refused(source: bytes, root: Path, message: str, **limits: int | float) -> None:
    with pytest.raises(ShareFormatError) as caught:
        import_conversation(source, root, limits=ImportLimits(**limits))  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert list(root.iterdir()) == [], "a refused import left files behind"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "conversations"
    path.mkdir()
    return path


@pytest.mark.parametrize("data", [b"", b"hello", b"<html>not a zip</html>", b"PK\x03\x04junk"])
def test_not_a_zip(root: Path, data: bytes) -> None:
    assert_refused(data, root, "not a zip file")


@pytest.mark.parametrize("name", [EVENTS_FILE, CASSETTE_FILE, META_FILE, MANIFEST_FILE])
def test_missing_required_files(root: Path, example_zip: bytes, name: str) -> None:
    members = read_zip(example_zip)
    del members[name]
    assert_refused(build_zip(members), root, f"missing files: {name}")


def test_missing_file_listed_in_the_manifest(root: Path, example_zip: bytes) -> None:
    members = read_zip(example_zip)
    del members["workspace/sales.csv"]
    assert_refused(build_zip(members), root, "missing files: workspace/sales.csv")


def test_file_not_listed_in_the_manifest(root: Path, example_zip: bytes) -> None:
    members = {**read_zip(example_zip), "workspace/extra.txt": b"x"}
    assert_refused(build_zip(members), root, "not listed in the manifest: workspace/extra.txt")


@pytest.mark.parametrize("name", [EVENTS_FILE, CASSETTE_FILE, "workspace/summary.txt"])
def test_bad_hashes(root: Path, example_zip: bytes, name: str) -> None:
    members = read_zip(example_zip)
    members[name] = members[name].replace(b"2024", b"2025", 1)
    assert_refused(build_zip(members), root, f"bad hash for {name}")


@pytest.mark.parametrize("version", [0, 3, 99, "1", None, True])
def test_unknown_format_version(root: Path, example_zip: bytes, version: object) -> None:
    members = read_zip(example_zip)
    manifest = manifest_of(members)
    manifest["format_version"] = version
    members[MANIFEST_FILE] = json.dumps(manifest).encode()
    assert_refused(build_zip(members), root, f"unknown format version {version!r}")


def test_manifest_that_is_not_json(root: Path, example_zip: bytes) -> None:
    members = {**read_zip(example_zip), MANIFEST_FILE: b"{not json"}
    assert_refused(build_zip(members), root, "manifest.json is not valid JSON")


@pytest.mark.parametrize(
    "name",
    [
        "../evil.txt",
        "/etc/evil.txt",
        "workspace/../../evil.txt",
        "workspace/a/../../../evil.txt",
        "C:/evil.txt",
        "workspace\\..\\..\\evil.txt",
        "workspace//evil.txt",
    ],
)
def test_entries_escaping_the_target_folder(root: Path, example_zip: bytes, name: str) -> None:
    members = {**read_zip(example_zip), name: b"owned"}
    assert_refused(build_zip(members), root, "escapes the target folder")
    assert not (root.parent / "evil.txt").exists()


def test_symbolic_link_entries(root: Path, example_zip: bytes) -> None:
    buffer = io.BytesIO(example_zip)
    with zipfile.ZipFile(buffer, "a") as zf:
        info = zipfile.ZipInfo("workspace/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    assert_refused(buffer.getvalue(), root, "is a symbolic link")


def test_unexpected_top_level_file(root: Path, example_zip: bytes) -> None:
    members = {**read_zip(example_zip), "runtime.json": b"{}"}
    assert_refused(build_zip(members), root, "unexpected file 'runtime.json'")


def test_duplicate_entries(root: Path, example_zip: bytes) -> None:
    buffer = io.BytesIO(example_zip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate
        with zipfile.ZipFile(buffer, "a") as zf:
            zf.writestr(EVENTS_FILE, b"")
    assert_refused(buffer.getvalue(), root, "appears twice")


def test_zip_bomb_by_compression_ratio(root: Path, example_zip: bytes) -> None:
    members = rehash({**read_zip(example_zip), "workspace/zeros.bin": b"\x00" * (8 << 20)})
    assert_refused(build_zip(members), root, "zip bomb: 'workspace/zeros.bin' expands")


def test_zip_bomb_by_total_size(root: Path, example_zip: bytes) -> None:
    assert_refused(
        example_zip, root, "zip bomb: the entries unpack to more than", max_total_bytes=50_000
    )


def test_zip_bomb_by_entry_count(root: Path, example_zip: bytes) -> None:
    assert_refused(example_zip, root, "entries, more than the limit of 5", max_entries=5)


def test_zip_bomb_whose_headers_lie_is_caught_while_extracting(
    root: Path, example_zip: bytes
) -> None:
    members = rehash({**read_zip(example_zip), "workspace/zeros.bin": b"\x00" * 300_000})
    data = bytearray(build_zip(members))
    # Make the central directory claim zeros.bin unpacks to 100 bytes.
    entry = data.index(b"PK\x01\x02")
    name = b"workspace/zeros.bin"
    while True:
        name_length = struct.unpack_from("<H", data, entry + 28)[0]
        if bytes(data[entry + 46 : entry + 46 + name_length]) == name:
            break
        entry = data.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", data, entry + 24, 100)
    assert_refused(bytes(data), root, "'workspace/zeros.bin' is damaged or lies about its size")


def test_events_that_do_not_match_the_schema(root: Path, example_zip: bytes) -> None:
    members = read_zip(example_zip)
    lines = members[EVENTS_FILE].split(b"\n")
    lines[1] = b'{"id": 1, "kind": "teleport", "source": "agent"}'
    members[EVENTS_FILE] = b"\n".join(lines)
    assert_refused(build_zip(rehash(members)), root, "events.jsonl line 2 is not a valid event")


def test_cassette_and_meta_that_do_not_match_the_schema(root: Path, example_zip: bytes) -> None:
    members = read_zip(example_zip)
    members[CASSETTE_FILE] = b'{"request": "not an object"}\n'
    assert_refused(build_zip(rehash(members)), root, "cassette.jsonl line 1 is not a valid entry")
    members = read_zip(example_zip)
    members[META_FILE] = b'{"id": "../../etc"}'
    assert_refused(build_zip(rehash(members)), root, "meta.json is invalid: id")


def test_request_patches_need_format_version_2(
    root: Path, example_zip: bytes, tmp_path: Path
) -> None:
    """A version 1 export holds whole requests only; the same cassette with patches is read
    under version 2 and gives the same entries."""
    members = read_zip(example_zip)
    assert manifest_of(members)["format_version"] == 1
    old_entries = Cassette(EXAMPLE / CASSETTE_FILE).entries()
    patched = Cassette(tmp_path / CASSETTE_FILE)
    for entry in old_entries:
        patched.record(
            entry.request,
            entry.response,
            entry.error,
            entry.latency,
            attempt=entry.attempt,
            final=entry.final,
        )
    patched.close()
    members[CASSETTE_FILE] = (tmp_path / CASSETTE_FILE).read_bytes()
    assert b'"patch"' in members[CASSETTE_FILE]
    assert_refused(
        build_zip(rehash(members)),
        root,
        "cassette.jsonl line 2 is not a valid entry: a request patch",
    )
    manifest = manifest_of(members)
    manifest["format_version"] = 2
    members[MANIFEST_FILE] = json.dumps(manifest).encode()
    result = import_conversation(build_zip(rehash(members)), root)
    imported = Cassette(result.directory / CASSETTE_FILE).entries()
    assert [e.model_dump(exclude={"timestamp"}) for e in imported] == [
        e.model_dump(exclude={"timestamp"}) for e in old_entries
    ]


def test_an_unpacked_export_zips_its_manifest_files_only(tmp_path: Path, root: Path) -> None:
    """Reading the folder's log leaves its index beside it; zipping the folder again for an
    import must not carry it (import refuses files the manifest does not list)."""
    folder = tmp_path / "run"
    shutil.copytree(EXAMPLE, folder)
    with EventLog(folder / EVENTS_FILE, read_only=True) as reader:
        assert len(reader) > 0
    assert (folder / "events.idx").is_file()
    data = read_export(folder)
    assert "events.idx" not in read_zip(data)
    assert import_conversation(data, root).original_id == "example-sales-summary"
