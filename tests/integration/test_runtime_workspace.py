"""Workspace routes of a real runtime: list, read, upload, zip, and their refusals."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jupyter_convo.agent.settings import LLMConfig

if TYPE_CHECKING:
    from runtime_harness import RuntimeProcess, StartRuntime

pytestmark = pytest.mark.integration

CID = "ws-test"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


async def bound_runtime(
    start_runtime: StartRuntime, llm: LLMConfig, *args: str
) -> tuple[RuntimeProcess, Path]:
    runtime = await start_runtime(*args)
    await runtime.create(CID, llm)
    workspace = runtime.conversation_dir(CID) / "workspace"
    assert workspace.is_dir()
    return runtime, workspace


def url(route: str) -> str:
    return f"/api/conversations/{CID}/{route}"


async def test_list_and_select_files(
    start_runtime: StartRuntime, scripted_llm_config: LLMConfig, tmp_path: Path
) -> None:
    runtime, workspace = await bound_runtime(start_runtime, scripted_llm_config)
    (workspace / "data").mkdir()
    (workspace / "data" / "sales.csv").write_text("month,revenue\n1,10\n")
    (workspace / "notes.md").write_text("# héllo\n", encoding="utf-8")
    (workspace / "plot.png").write_bytes(PNG_BYTES)
    (workspace / "latin1.txt").write_bytes("café".encode("latin-1"))
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (workspace / "link.txt").symlink_to(outside)

    async with runtime.client() as client:
        listing = await client.get(url("list-files"))
        assert listing.status_code == 200
        assert listing.json() == ["data/", "latin1.txt", "link.txt", "notes.md", "plot.png"]
        sub = await client.get(url("list-files"), params={"path": "data"})
        assert sub.json() == ["data/sales.csv"]

        text = await client.get(url("select-file"), params={"file": "notes.md"})
        assert text.status_code == 200
        assert text.json() == {"file": "notes.md", "content": "# héllo\n"}
        nested = await client.get(url("select-file"), params={"file": "data/sales.csv"})
        assert nested.json()["content"] == "month,revenue\n1,10\n"

        cases = {
            "plot.png": 415,
            "latin1.txt": 415,
            "missing.txt": 404,
            "data": 400,
            "../outside.txt": 400,
            str(outside): 400,
            "link.txt": 400,
            "/etc/passwd": 400,
        }
        for file, status in cases.items():
            response = await client.get(url("select-file"), params={"file": file})
            assert response.status_code == status, (file, response.text)
            assert response.json()["status"] == status
            assert response.json()["error"]
            assert "not yours" not in response.text

        for path, status in {"../": 400, "nope": 404, "notes.md": 400}.items():
            response = await client.get(url("list-files"), params={"path": path})
            assert response.status_code == status, (path, response.text)
        no_file = await client.get(url("select-file"))
        assert no_file.status_code == 400
        assert "file" in no_file.json()["error"]


async def test_upload_files(start_runtime: StartRuntime, scripted_llm_config: LLMConfig) -> None:
    runtime, workspace = await bound_runtime(start_runtime, scripted_llm_config)
    files = [
        ("files", ("a.txt", b"alpha\n", "text/plain")),
        ("files", ("sub/dir/b.bin", PNG_BYTES, "application/octet-stream")),
        ("files", ("../escape.txt", b"no", "text/plain")),
        ("files", ("/etc/evil.txt", b"no", "text/plain")),
        ("other", ("c.txt", b"gamma", "text/plain")),
    ]
    async with runtime.client() as client:
        response = await client.post(url("upload-files"), files=files)
        assert response.status_code == 200, response.text
        result = response.json()
        assert sorted(result["uploaded"]) == ["a.txt", "c.txt", "sub/dir/b.bin"]
        skipped = {item["name"]: item["reason"] for item in result["skipped"]}
        assert set(skipped) == {"../escape.txt", "/etc/evil.txt"}
        assert all("outside the workspace" in reason for reason in skipped.values())

        replaced = await client.post(url("upload-files"), files=[("f", ("a.txt", b"v2", "x/y"))])
        assert replaced.json() == {"uploaded": ["a.txt"], "skipped": []}

        not_multipart = await client.post(url("upload-files"), json={"a": 1})
        assert not_multipart.status_code == 400
        no_files = await client.post(url("upload-files"), data={"field": "value"}, files={})
        assert no_files.status_code == 400

    assert (workspace / "a.txt").read_bytes() == b"v2"
    assert (workspace / "sub" / "dir" / "b.bin").read_bytes() == PNG_BYTES
    assert (workspace / "c.txt").read_bytes() == b"gamma"
    assert not (workspace.parent / "escape.txt").exists()
    leftovers = [p.name for p in workspace.rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


async def test_upload_over_the_limit_is_413_and_writes_nothing(
    start_runtime: StartRuntime, scripted_llm_config: LLMConfig
) -> None:
    limit = 64 * 1024
    runtime, workspace = await bound_runtime(
        start_runtime, scripted_llm_config, "--max-upload-bytes", str(limit)
    )
    async with runtime.client() as client:
        big = [("files", ("big.bin", b"x" * (limit + 1), "application/octet-stream"))]
        response = await client.post(url("upload-files"), files=big)
        assert response.status_code == 413
        body = response.json()
        assert body["status"] == 413
        assert str(limit) in body["error"]
        assert "limit" in body["error"]

        # Streamed without Content-Length (chunked): counted while reading.
        boundary = "b0undary"
        payload = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="c.bin"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + b"y" * (limit + 10)
            + f"\r\n--{boundary}--\r\n".encode()
        )

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 8192):
                yield payload[start : start + 8192]

        chunked = await client.post(
            url("upload-files"),
            content=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert chunked.status_code == 413, chunked.text

        small = await client.post(url("upload-files"), files=[("f", ("ok.txt", b"ok", "x/y"))])
        assert small.json()["uploaded"] == ["ok.txt"]
    assert sorted(p.name for p in workspace.iterdir()) == ["ok.txt"]


async def test_workspace_zip(start_runtime: StartRuntime, scripted_llm_config: LLMConfig) -> None:
    runtime, workspace = await bound_runtime(start_runtime, scripted_llm_config)
    expected = {
        "report.md": b"# report\n",
        "data/sales.csv": b"month,revenue\n1,10\n",
        "plots/fig.png": PNG_BYTES,
    }
    for name, content in expected.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_bytes(content)
    async with runtime.client() as client:
        response = await client.get(url("workspace.zip"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f"{CID}-workspace.zip" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        assert {name: archive.read(name) for name in archive.namelist()} == expected


async def test_workspace_routes_for_another_conversation_are_404(
    start_runtime: StartRuntime, scripted_llm_config: LLMConfig
) -> None:
    runtime, _ = await bound_runtime(start_runtime, scripted_llm_config)
    async with runtime.client() as client:
        for route in ("list-files", "select-file?file=a", "workspace.zip"):
            response = await client.get(f"/api/conversations/other/{route}")
            assert response.status_code == 404, route
        upload = await client.post(
            "/api/conversations/other/upload-files", files=[("f", ("a.txt", b"a", "x/y"))]
        )
        assert upload.status_code == 404
        assert upload.json()["status"] == 404
