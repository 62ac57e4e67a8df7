"""The panel on a JupyterLab whose server lacks jupyter-convo: it says so and how to fix it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lab_process import LabServer, start_lab
from panel_driver import PanelDriver
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab with the labextension but the server extension disabled."""
    server = start_lab(
        tmp_path_factory.mktemp("lab-no-convo"), llm_base_url=None, convo_enabled=False
    )
    try:
        yield server
    finally:
        server.stop()


def test_panel_explains_a_missing_server_extension(page: Any, lab: LabServer) -> None:
    ui = PanelDriver(page, lab)
    assert ui.api_get("conversations/count").status_code == 404

    panel = ui.open_panel()
    banner = panel.locator(".jp-convo-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("server extension is not running")
    expect(banner.locator(".jp-convo-fix")).to_have_text(
        "pip install jupyter-convo\njupyter server extension enable jupyter_convo"
    )
    expect(ui.list_items()).to_have_count(0)

    # Starting a conversation says why it cannot, in the form.
    panel.locator(".jp-convo-new").click()
    panel.locator(".jp-convo-task").fill("anything")
    panel.locator(".jp-convo-start-button").click()
    expect(panel.locator(".jp-convo-form-error")).to_contain_text("server extension is not running")
