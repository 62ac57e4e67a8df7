"""Fixtures of the share tests: the committed example run, as a folder and as a zip."""

from __future__ import annotations

from pathlib import Path

import pytest
from share_helpers import EXAMPLE, zip_directory

from jupyter_convo.share.format import MANIFEST_FILE


@pytest.fixture
def example_dir() -> Path:
    assert (EXAMPLE / MANIFEST_FILE).is_file(), f"the example run is missing at {EXAMPLE}"
    return EXAMPLE


@pytest.fixture
def example_zip(example_dir: Path) -> bytes:
    return zip_directory(example_dir)
