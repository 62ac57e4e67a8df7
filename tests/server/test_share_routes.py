"""Share routes on a real server: import, export, notebook, and a replay conversation."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest
from server_harness import WAIT, Api

from jupyter_convo.events.schema import Event, ReplayStepEvent, ReplaySummaryEvent

EXAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "runs" / "sales-summary"
PLANTED_KEY = "sk-alice-planted-key-31415926535"
ZIP = {"Content-Type": "application/zip"}


def example_members() -> dict[str, bytes]:
    return {
        path.relative_to(EXAMPLE).as_posix(): path.read_bytes()
        for path in sorted(EXAMPLE.rglob("*"))
        if path.is_file()
    }


def build_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def with_planted_key(members: dict[str, bytes]) -> dict[str, bytes]:
    """The example with alice's API key in clear in a user message (hashes made to match)."""
    events = members["events.jsonl"].replace(
        b"total the amounts by month", f"total the amounts by month (key {PLANTED_KEY})".encode()
    )
    changed = {**members, "events.jsonl": events}
    manifest = json.loads(changed["manifest.json"])
    manifest["conversation_id"] = "planted"
    meta = json.loads(changed["meta.json"])
    meta["id"] = "planted"
    changed["meta.json"] = json.dumps(meta).encode()
    manifest["files"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in changed.items()
        if name != "manifest.json"
    }
    changed["manifest.json"] = json.dumps(manifest).encode()
    return changed


async def start_replay(api: Api, source: str) -> dict[str, Any]:
    """A cassette replay of ``source`` through stream-start; the READY start task."""
    updates = await api.call(
        "POST",
        "conversations/stream-start",
        body={"replay": {"source_conversation_id": source, "mode": "cassette"}},
    )
    assert updates[-1]["status"] == "READY", updates
    return dict(updates[-1])


async def import_zip(api: Api, data: bytes) -> dict[str, Any]:
    response = await api.raw("POST", "conversations/import", raw_body=data, headers=ZIP)
    assert response.code == 201
    return dict(json.loads(response.body))


async def test_import_browse_export_notebook(alice: Api, bob: Api, jp_serverapp: Any) -> None:
    imported = await import_zip(alice, build_zip(example_members()))
    cid = imported["id"]
    assert cid == "example-sales-summary"
    assert imported["user_id"] == "alice" and imported["status"] == "STOPPED"
    assert imported["tags"]["example"] == "hand-written"

    listed = await alice.get("conversations/search")
    assert [item["id"] for item in listed["items"]] == [cid]
    page = await alice.get(f"conversations/{cid}/events/search", limit=100)
    assert len(page["items"]) == 40

    response = await alice.raw("GET", f"conversations/{cid}/export")
    assert response.headers["Content-Type"] == "application/zip"
    assert (
        'filename="Example-monthly-totals-from-sales.csv.convo.zip"'
        in (response.headers["Content-Disposition"])
    )
    with zipfile.ZipFile(io.BytesIO(response.body)) as zf:
        assert zf.read("events.jsonl") == (EXAMPLE / "events.jsonl").read_bytes()
        assert not any(name.startswith("workspace/") for name in zf.namelist())
    with_workspace = await alice.raw("GET", f"conversations/{cid}/export", params={"workspace": 1})
    with zipfile.ZipFile(io.BytesIO(with_workspace.body)) as zf:
        assert "workspace/summary.txt" in zf.namelist()

    notebook_response = await alice.raw("GET", f"conversations/{cid}/notebook")
    assert notebook_response.headers["Content-Type"] == "application/x-ipynb+json"
    notebook = nbformat.reads(notebook_response.body.decode(), as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["jupyter_convo"]["conversation_id"] == cid
    assert "!cat summary.txt" in [c.source for c in notebook.cells]

    # Another user sees none of it, and importing the same file gives them their own copy.
    for path in (f"conversations/{cid}/export", f"conversations/{cid}/notebook"):
        assert (await bob.error("GET", path)).code == 404
    theirs = await import_zip(bob, build_zip(example_members()))
    assert theirs["id"] != cid and theirs["user_id"] == "bob"
    assert theirs["tags"]["imported_from"] == cid


async def test_exports_hide_the_users_secrets(alice: Api, jp_serverapp: Any) -> None:
    await alice.call("PUT", "settings", body={"llm_api_key": PLANTED_KEY})
    imported = await import_zip(alice, build_zip(with_planted_key(example_members())))
    response = await alice.raw("GET", f"conversations/{imported['id']}/export")
    assert PLANTED_KEY.encode() not in response.body
    with zipfile.ZipFile(io.BytesIO(response.body)) as zf:
        for name in zf.namelist():
            assert PLANTED_KEY.encode() not in zf.read(name), name
        assert b"(key <secret-hidden>)" in zf.read("events.jsonl")
    notebook = await alice.raw("GET", f"conversations/{imported['id']}/notebook")
    assert PLANTED_KEY.encode() not in notebook.body
    assert b"<secret-hidden>" in notebook.body


async def test_bad_uploads_are_refused_with_the_problem_named(
    alice: Api, jp_serverapp: Any
) -> None:
    members = example_members()
    cases: list[tuple[bytes, int, str]] = [
        (b"", 400, "no export in the upload"),
        (b"certainly not a zip", 400, "invalid export: not a zip file"),
        (build_zip({k: v for k, v in members.items() if k != "events.jsonl"}), 400, "missing"),
        (
            build_zip({**members, "events.jsonl": members["events.jsonl"][:-200] + b"\n"}),
            400,
            "bad hash for events.jsonl",
        ),
        (build_zip({**members, "../x": b"x"}), 400, "escapes the target folder"),
        (b"\x00" * (70 * 1024), 413, "exceeds the limit"),
    ]
    for body, status, message in cases:
        error = await alice.error("POST", "conversations/import", raw_body=body, headers=ZIP)
        assert (error.code, message in error.message) == (status, True), error.message
    assert (await alice.get("conversations/count"))["count"] == 0


async def test_a_replay_conversation_reports_every_step(
    alice: Api, bob: Api, jp_serverapp: Any, open_socket: Any
) -> None:
    imported = await import_zip(alice, build_zip(example_members()))
    source = imported["id"]
    error = await bob.error(
        "POST", "conversations", body={"replay": {"source_conversation_id": source}}
    )
    assert error.code == 404
    error = await alice.error(
        "POST", "conversations", body={"replay": {"source_conversation_id": source, "mode": "x"}}
    )
    assert error.code == 400 and "replay.mode" in error.message

    task = await start_replay(alice, source)
    replay_id = task["conversation_id"]
    meta = await alice.get(f"conversations/{replay_id}")
    assert meta["title"] == "Replay of Example: monthly totals from sales.csv"
    socket = await open_socket(replay_id)
    summary = await socket.until(lambda e: isinstance(e, ReplaySummaryEvent), timeout=WAIT)
    assert isinstance(summary, ReplaySummaryEvent)
    steps: list[Event] = [e for e in socket.events if isinstance(e, ReplayStepEvent)]
    assert (summary.steps, summary.reproduced, summary.mode) == (9, 9, "cassette"), [
        e.diff for e in steps if isinstance(e, ReplayStepEvent)
    ]
    assert len(steps) == 9
    await alice.post(f"conversations/{replay_id}/stop")


def tree(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def export_with(extra: list[tuple[str, bytes]]) -> bytes:
    """The example export plus ``extra`` workspace files, listed in its manifest with
    their true hashes: a well-formed export, whatever it unpacks to."""
    members = example_members()
    manifest = json.loads(members["manifest.json"])
    for name, data in extra:
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    members["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [*members.items(), *extra]:
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("convo_config", [{"upload_max_bytes": 8 * 1024 * 1024}])
async def test_zip_bombs_of_many_small_entries_are_413_and_write_nothing(
    alice: Api, convo_data_dir: Path
) -> None:
    """300 zero-filled files of 1 MiB (each under the per-entry ratio check) add up to a
    bomb; 20,000 empty entries too. Both are refused before a byte is written."""
    zeros = b"\x00" * (1024 * 1024)
    bomb = export_with([(f"workspace/z{n}.bin", zeros) for n in range(300)])
    crowd = export_with([(f"workspace/f{n}", b"") for n in range(20_000)])
    assert len(bomb) < 1024 * 1024 and len(crowd) < 8 * 1024 * 1024
    await alice.get("conversations/search")  # the manager has started: its files exist
    before = tree(convo_data_dir)
    for data, limit in ((bomb, "200 times the size of the upload"), (crowd, "limit of 10000")):
        error = await alice.error("POST", "conversations/import", raw_body=data, headers=ZIP)
        assert error.code == 413, error
        assert "zip bomb" in error.message and limit in error.message, error.message
    assert tree(convo_data_dir) == before, "nothing was unpacked"


async def test_an_import_keeps_the_apis_title_limit(alice: Api) -> None:
    members = example_members()
    meta = json.loads(members["meta.json"])
    meta["title"] = "t" * 201
    changed = {**members, "meta.json": json.dumps(meta).encode()}
    manifest = json.loads(changed["manifest.json"])
    manifest["files"]["meta.json"] = {
        "sha256": hashlib.sha256(changed["meta.json"]).hexdigest(),
        "size": len(changed["meta.json"]),
    }
    changed["manifest.json"] = json.dumps(manifest).encode()
    error = await alice.error(
        "POST", "conversations/import", raw_body=build_zip(changed), headers=ZIP
    )
    assert error.code == 400 and "title" in error.message and "200" in error.message, error
    renamed = await alice.error("PATCH", "conversations/x", body={"title": "t" * 201})
    assert renamed.code == 400 and "200" in renamed.message  # the same limit as the API's
