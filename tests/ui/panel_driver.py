"""How a user works the Conversations panel, as Playwright steps (selectors live here only).

Every wait is Playwright's: a bounded wait for a condition on the page, failing loudly.
"""

from __future__ import annotations

from typing import Any

import httpx
from lab_process import LabServer
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

PANEL_TAB = '.lm-TabBar-tab[data-id="jupyter-convo-panel"]'
VIEW_PREFIX = "jp-convo-view-"
# Agent runs (a runtime start, a kernel start) take seconds; allow plenty.
RUN_TIMEOUT = 60_000
# One try at the command palette (open, type, Enter, the focus lands), and how many.
PALETTE_TIMEOUT = 10_000
PALETTE_TRIES = 3


class PanelDriver:
    def __init__(self, page: Page, server: LabServer) -> None:
        self.page = page
        self.server = server

    # --- the panel -------------------------------------------------------------------------

    @property
    def panel(self) -> Locator:
        return self.page.locator("#jupyter-convo-panel")

    def open_panel(self) -> Locator:
        """Click the panel's tab in the left sidebar (unless it is already open)."""
        if not self.panel.is_visible():
            self.page.locator(PANEL_TAB).click()
        expect(self.panel).to_be_visible()
        return self.panel

    def list_items(self) -> Locator:
        return self.panel.locator(".jp-convo-list-item")

    def list_item(self, title_part: str) -> Locator:
        return self.list_items().filter(has_text=title_part)

    def search(self, text: str) -> None:
        box = self.panel.locator(".jp-convo-search")
        box.fill(text)

    def new_conversation(
        self,
        task: str,
        *,
        confirm_actions: bool = False,
        workspace: str | None = None,
    ) -> str:
        """Fill the new-conversation form and start; answers the new conversation's id."""
        self.open_panel()
        self.panel.locator(".jp-convo-new").click()
        form = self.panel.locator(".jp-convo-form")
        expect(form).to_be_visible()
        task_box = form.locator(".jp-convo-task")
        expect(task_box).to_be_focused()
        task_box.fill(task)
        checkbox = form.locator('input[name="confirmation_mode"]')
        if confirm_actions:
            checkbox.check()
        else:
            checkbox.uncheck()
        if workspace is not None:
            form.locator('input[name="workspace"]').fill(workspace)
        known = set(self.view_ids())
        form.locator(".jp-convo-start-button").click()
        expect(form).to_be_hidden(timeout=RUN_TIMEOUT)
        new_view = self.page.locator(".jp-convo-view").filter(
            has=self.page.locator(".jp-convo-row", has_text=task)
        )
        expect(new_view).to_have_count(1, timeout=RUN_TIMEOUT)
        view_id = str(new_view.get_attribute("id"))
        assert view_id not in known
        return view_id.removeprefix(VIEW_PREFIX)

    # --- a conversation view ---------------------------------------------------------------

    def view_ids(self) -> list[str]:
        ids = self.page.locator(".jp-convo-view").evaluate_all("nodes => nodes.map(n => n.id)")
        return [str(i) for i in ids]

    def view(self, conversation_id: str) -> Locator:
        return self.page.locator(f"#{VIEW_PREFIX}{conversation_id}")

    def activate_view(self, conversation_id: str) -> Locator:
        """Click the view's tab in the main area."""
        self.page.locator(f'.lm-TabBar-tab[data-id="{VIEW_PREFIX}{conversation_id}"]').click()
        expect(self.view(conversation_id)).to_be_visible()
        return self.view(conversation_id)

    def rows(self, conversation_id: str, kind: str | None = None) -> Locator:
        selector = ".jp-convo-row" + (f'[data-kind="{kind}"]' if kind else "")
        return self.view(conversation_id).locator(selector)

    def badge(self, conversation_id: str) -> Locator:
        return self.view(conversation_id).locator(".jp-convo-view-title .jp-convo-badge")

    def sandbox_badge(self, conversation_id: str) -> Locator:
        return self.view(conversation_id).locator(".jp-convo-view-title .jp-convo-sandbox-badge")

    def button(self, conversation_id: str, css: str) -> Locator:
        return self.view(conversation_id).locator(f"button.{css}")

    def send(self, conversation_id: str, text: str) -> None:
        box = self.view(conversation_id).locator(".jp-convo-message")
        box.click()
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("", timeout=RUN_TIMEOUT)

    def wait_for_state(self, conversation_id: str, label: str) -> None:
        expect(self.badge(conversation_id)).to_have_text(label, timeout=RUN_TIMEOUT)

    # --- JupyterLab ----------------------------------------------------------------------------

    def run_from_palette(self, label: str, focused: Locator) -> None:
        """Open the command palette with its shortcut, run the command ``label`` with Enter,
        until ``focused`` has the focus. The palette closes when it loses the focus: should
        JupyterLab move the focus while the palette is open (its Launcher activates itself
        as the page settles), the Enter runs nothing and the user opens the palette again.
        The commands run here only show and focus things, so running one twice is harmless.
        """
        palette = self.page.locator(".lm-CommandPalette-input")

        def attempt() -> None:
            self.page.keyboard.press("Control+Shift+C")
            expect(palette).to_be_focused(timeout=PALETTE_TIMEOUT)
            palette.fill(label, timeout=PALETTE_TIMEOUT)
            expect(
                self.page.locator(".lm-CommandPalette-item.lm-mod-active", has_text=label)
            ).to_be_visible(timeout=PALETTE_TIMEOUT)
            self.page.keyboard.press("Enter")
            expect(focused).to_be_focused(timeout=PALETTE_TIMEOUT)

        for _ in range(PALETTE_TRIES - 1):
            try:
                attempt()
                return
            except (AssertionError, PlaywrightTimeout):
                self.page.keyboard.press("Escape")  # close a palette left open, if any
        attempt()

    def run_command(self, command: str, args: dict[str, Any] | None = None) -> None:
        self.page.evaluate(
            "([command, args]) => window.jupyterapp.commands.execute(command, args)",
            [command, args or {}],
        )

    def set_theme(self, dark: bool) -> None:
        theme = "JupyterLab Dark" if dark else "JupyterLab Light"
        self.run_command("apputils:change-theme", {"theme": theme})
        expect(self.page.locator("body")).to_have_attribute(
            "data-jp-theme-light", "false" if dark else "true", timeout=RUN_TIMEOUT
        )

    def close_tab(self, widget_id: str) -> None:
        tab = self.page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab[data-id="{widget_id}"]')
        tab.locator(".lm-TabBar-tabCloseIcon").click()
        expect(tab).to_have_count(0)

    # --- the server, directly ------------------------------------------------------------------

    def api_get(self, path: str) -> httpx.Response:
        return httpx.get(self.server.api_url(path), headers=self.server.headers, timeout=30)
