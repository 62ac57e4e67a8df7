"""Helpers of the share tests: the committed example run and zip building."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from jupyter_convo.share.format import MANIFEST_FILE

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "notebooks" / "runs" / "sales-summary"
EXAMPLE_SPEC = REPO / "notebooks" / "runs" / "sales-summary.run.json"


def zip_directory(directory: Path) -> bytes:
    """An unpacked export zipped again (manifest included), as a download would be."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def build_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def manifest_of(members: dict[str, bytes]) -> dict[str, object]:
    loaded = json.loads(members[MANIFEST_FILE])
    assert isinstance(loaded, dict)
    return loaded
