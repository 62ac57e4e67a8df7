"""The Conversations panel in a real JupyterLab, driven like a user with Playwright.

Each test starts its conversations from the panel's form; the scripted LLM answers them by
the task text (a script per test). Gates hold an answer until the test is ready to watch it
arrive, so "streams in live" is observed, not assumed.
"""

from __future__ import annotations

import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from contrast import low_contrast
from lab_process import PAGE_SIZE, LabServer
from page_checks import (
    AT_END,
    IMAGE_LOADED,
    ONE_LINE_CELLS,
    SCROLLS_SIDEWAYS,
    WIDE_TABLE_CODE,
    tall_image_code,
)
from panel_driver import RUN_TIMEOUT, PanelDriver
from playwright.sync_api import expect

from jupyter_convo.testing import ScriptedLLM, reply, tool_call

pytestmark = pytest.mark.timeout(300)


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def test_drive_a_conversation_from_the_panel(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM
) -> None:
    """Create, watch it stream, confirm, message, stop, find by search, delete."""
    task = unique("Tidy the sales folder")
    gate = f"first-step-{task}"
    ui_llm.add_script(
        [
            tool_call(
                "terminal",
                {"command": "echo hello-from-agent", "security_risk": "high"},
                content="I'll look first.",
                gate=gate,
            ),
            reply("The folder holds **hello-from-agent**."),
            tool_call(
                "python",
                {
                    "code": "from IPython.display import HTML, display\n"
                    "display(HTML('<table><tr><td>revenue-cell</td></tr></table>'))\n"
                    "print(6 * 7)",
                    "security_risk": "low",
                },
            ),
            tool_call(
                "file_editor",
                {
                    "command": "create",
                    "path": "notes.md",
                    "file_text": "# Notes\nrevenue is up\n",
                    "security_risk": "low",
                },
            ),
            reply("Done: the table and the notes are ready."),
        ],
        match=task,
    )
    other_task = unique("Summarize the quarterly report")
    ui_llm.add_script([reply("Summary: all good.")], match=other_task)
    ui = PanelDriver(page, lab)

    ui.open_panel()
    cid = ui.new_conversation(task, confirm_actions=True)

    # The view shows the task at once; the agent's first step streams in when released.
    expect(ui.rows(cid, "message").first).to_contain_text(task)
    expect(ui.rows(cid, "command")).to_have_count(0)
    ui_llm.open_gate(gate)
    command = ui.rows(cid, "command")
    expect(command).to_contain_text("echo hello-from-agent", timeout=RUN_TIMEOUT)
    expect(command).to_contain_text("Waiting for your confirmation (risk: high)")
    ui.wait_for_state(cid, "awaiting user confirmation")
    # The runtime said how the agent's tools are isolated: a badge of its own.
    expect(ui.sandbox_badge(cid)).to_have_text("confined")
    expect(ui.rows(cid, "sandbox")).to_contain_text("Sandbox: bubblewrap, network on")
    confirm_bar = ui.view(cid).locator(".jp-convo-confirm")
    expect(confirm_bar).to_contain_text("waits for your confirmation")

    # Confirm: the command runs, its output and the agent's Markdown answer arrive.
    confirm_bar.locator("button.jp-convo-confirm-button").click()
    expect(ui.rows(cid, "command_output")).to_contain_text("hello-from-agent", timeout=RUN_TIMEOUT)
    expect(ui.rows(cid, "confirmation")).to_contain_text("Confirmed action")
    expect(command).not_to_contain_text("Waiting for your confirmation")
    answer = ui.rows(cid, "message").filter(has_text="The folder holds")
    expect(answer.locator("strong")).to_have_text("hello-from-agent", timeout=RUN_TIMEOUT)
    ui.wait_for_state(cid, "awaiting user input")
    expect(confirm_bar).to_be_hidden()

    # A message from the box: Python with a rich output, then a file edit shown as a diff.
    ui.send(cid, "Now make the table and the notes")
    output = ui.rows(cid, "python_output")
    expect(output.locator("td")).to_have_text("revenue-cell", timeout=RUN_TIMEOUT)
    # Through JupyterLab's own renderers (rendermime), as a notebook output would be.
    rich = output.locator('.jp-convo-mime[data-mime-type="text/html"] .jp-RenderedHTML')
    expect(rich.locator("td")).to_have_text("revenue-cell")
    expect(output).to_contain_text("42")
    expect(ui.rows(cid, "file_edit_result").locator(".jp-convo-diff-add").last).to_have_text(
        "+revenue is up", timeout=RUN_TIMEOUT
    )
    expect(ui.rows(cid, "message").last).to_contain_text(
        "the table and the notes are ready", timeout=RUN_TIMEOUT
    )
    ui.wait_for_state(cid, "awaiting user input")

    # Stop: the runtime goes away; Restart becomes possible.
    ui.button(cid, "jp-convo-stop").click()
    ui.wait_for_state(cid, "stopped")
    expect(ui.button(cid, "jp-convo-stop")).to_be_disabled()
    expect(ui.button(cid, "jp-convo-restart")).to_be_enabled()
    assert ui.api_get(f"conversations/{cid}").json()["status"] == "STOPPED"

    # A second conversation, then find the first by a word of its title.
    other = ui.new_conversation(other_task)
    expect(ui.rows(other, "message").last).to_contain_text(
        "Summary: all good.", timeout=RUN_TIMEOUT
    )
    ui.open_panel()
    expect(ui.list_item(other_task)).to_have_count(1, timeout=RUN_TIMEOUT)
    ui.search(task.split()[-1])
    expect(ui.list_items()).to_have_count(1)
    expect(ui.list_item(task)).to_have_count(1)
    ui.search("")
    expect(ui.list_item(other_task)).to_have_count(1)
    ui.search(task.split()[-1])

    # Open it from the list and delete it.
    ui.list_item(task).click()
    expect(ui.view(cid)).to_be_visible()
    ui.button(cid, "jp-convo-delete").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Delete conversation?")
    dialog.locator("button.jp-mod-warn").click()
    expect(ui.view(cid)).to_have_count(0)
    expect(ui.list_items()).to_have_count(0)
    assert ui.api_get(f"conversations/{cid}").status_code == 404


def test_notifies_when_a_conversation_not_on_screen_answers(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM
) -> None:
    task = unique("Count the rows of orders.csv")
    gate = f"answer-{task}"
    ui_llm.add_script([reply("There are 12 rows.", gate=gate)], match=task)
    ui = PanelDriver(page, lab)

    cid = ui.new_conversation(task)
    expect(ui.rows(cid, "message").first).to_contain_text(task)
    ui.close_tab(f"jp-convo-view-{cid}")
    ui_llm.open_gate(gate)

    toast = page.locator(".jp-Notification-Toast-info, .Toastify__toast").filter(
        has_text="answered and waits for your reply"
    )
    expect(toast).to_have_count(1, timeout=RUN_TIMEOUT)
    toast.get_by_role("button", name="Open").click()
    expect(ui.view(cid)).to_be_visible()
    expect(ui.rows(cid, "message").last).to_contain_text("There are 12 rows.", timeout=RUN_TIMEOUT)


def test_layout_is_restored_on_reload(page: Any, lab: LabServer, ui_llm: ScriptedLLM) -> None:
    task = unique("Describe the dataset")
    ui_llm.add_script([reply("It has three columns.")], match=task)
    ui = PanelDriver(page, lab)
    cid = ui.new_conversation(task)
    expect(ui.rows(cid, "message").last).to_contain_text("three columns", timeout=RUN_TIMEOUT)

    page.reload()
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    expect(ui.panel).to_be_visible(timeout=RUN_TIMEOUT)
    expect(page.locator(f'.lm-TabBar-tab[data-id="jp-convo-view-{cid}"]')).to_have_count(1)
    ui.activate_view(cid)
    expect(ui.rows(cid, "message").last).to_contain_text("three columns", timeout=RUN_TIMEOUT)


def _background_luminance(locator: Any) -> float:
    """0 (black) .. 1 (white) of an element's computed background colour."""
    rgb = locator.evaluate(
        "n => getComputedStyle(n).backgroundColor.match(/[\\d.]+/g).slice(0, 3).map(Number)"
    )
    red, green, blue = (channel / 255 for channel in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_screenshots_light_and_dark(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM, output_dir: Path
) -> None:
    """The list and a conversation view in both themes, written under test-output/ui/."""
    task = unique("Plot revenue by month")
    ui_llm.add_script(
        [
            tool_call("terminal", {"command": "printf 'month,revenue\\njan,10\\n' > sales.csv"}),
            tool_call(
                "file_editor",
                {
                    "command": "create",
                    "path": "report.md",
                    "file_text": "# Revenue\n\n| month | revenue |\n|---|---|\n| jan | 10 |\n",
                },
            ),
            reply("Revenue is **up** in January.\n\n- `sales.csv` written\n- `report.md` made"),
        ],
        match=task,
    )
    ui = PanelDriver(page, lab)
    cid = ui.new_conversation(task)
    ui.wait_for_state(cid, "awaiting user input")
    expect(ui.rows(cid, "message").last).to_contain_text("Revenue is up", timeout=RUN_TIMEOUT)
    ui.open_panel()
    expect(ui.list_item(task)).to_have_count(1, timeout=RUN_TIMEOUT)

    shots: list[Path] = []
    for theme in ("light", "dark"):
        ui.set_theme(dark=theme == "dark")
        luminance = _background_luminance(ui.view(cid))
        assert (luminance < 0.3) if theme == "dark" else (luminance > 0.7), (theme, luminance)
        for name, locator in (("list", ui.panel), ("conversation", ui.view(cid))):
            path = output_dir / f"{name}-{theme}.png"
            locator.screenshot(path=str(path))
            shots.append(path)
    ui.set_theme(dark=False)
    for path in shots:
        assert path.stat().st_size > 5_000, path


def test_reject_rename_stop_and_restart(page: Any, lab: LabServer, ui_llm: ScriptedLLM) -> None:
    task = unique("Clean the temp folder")
    ui_llm.add_script(
        [
            tool_call("terminal", {"command": "rm -rf ./tmp-data", "security_risk": "high"}),
            reply("Understood, I leave it alone."),
        ],
        match=task,
    )
    ui = PanelDriver(page, lab)
    cid = ui.new_conversation(task, confirm_actions=True)
    confirm_bar = ui.view(cid).locator(".jp-convo-confirm")
    expect(confirm_bar).to_be_visible(timeout=RUN_TIMEOUT)
    confirm_bar.locator("button.jp-convo-reject-button").click()
    expect(ui.rows(cid, "confirmation")).to_contain_text("Rejected action", timeout=RUN_TIMEOUT)
    expect(ui.rows(cid, "command_output")).to_have_count(0)
    expect(ui.rows(cid, "message").last).to_contain_text("I leave it alone", timeout=RUN_TIMEOUT)

    # Rename: the dialog starts from the current title; view and list follow.
    new_title = unique("Temp folder review")
    ui.button(cid, "jp-convo-rename").click()
    dialog = page.locator(".jp-Dialog")
    title_box = dialog.locator("input")
    expect(title_box).to_have_value(task)
    title_box.fill(new_title)
    dialog.locator("button.jp-mod-accept").click()
    expect(ui.view(cid).locator(".jp-convo-view-title-text")).to_have_text(new_title)
    ui.open_panel()
    expect(ui.list_item(new_title)).to_have_count(1, timeout=RUN_TIMEOUT)
    assert ui.api_get(f"conversations/{cid}").json()["title"] == new_title

    # Stop, then restart: the runtime comes back and the history stays.
    ui.button(cid, "jp-convo-stop").click()
    ui.wait_for_state(cid, "stopped")
    ui.button(cid, "jp-convo-restart").click()
    expect(ui.button(cid, "jp-convo-stop")).to_be_enabled(timeout=RUN_TIMEOUT)
    expect(ui.badge(cid)).not_to_have_text("stopped", timeout=RUN_TIMEOUT)
    assert ui.api_get(f"conversations/{cid}").json()["status"] == "RUNNING"
    expect(ui.rows(cid, "message").filter(has_text="I leave it alone")).to_have_count(1)


def test_share_from_the_view(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM, tmp_path: Path
) -> None:
    """Open the workspace in the file browser, export, import the export, open as notebook."""
    task = unique("Write shared notes")
    notes = f"notes-{uuid.uuid4().hex[:6]}.md"
    ui_llm.add_script(
        [
            tool_call(
                "file_editor",
                {"command": "create", "path": notes, "file_text": "shared\n"},
            ),
            reply("Notes written."),
        ],
        match=task,
    )
    ui = PanelDriver(page, lab)
    ui.open_panel()
    ui.panel.locator(".jp-convo-new").click()
    ui.panel.locator(".jp-convo-use-folder").click()  # the file browser's folder: the root
    expect(ui.panel.locator('input[name="workspace"]')).to_have_value(".")
    ui.panel.locator(".jp-convo-cancel").click()
    cid = ui.new_conversation(task, workspace=".")
    expect(ui.rows(cid, "message").last).to_contain_text("Notes written.", timeout=RUN_TIMEOUT)
    assert (lab.root / notes).read_text() == "shared\n"

    ui.button(cid, "jp-convo-open-workspace").click()
    browser_item = page.locator(".jp-DirListing-item", has_text=notes)
    expect(browser_item).to_be_visible(timeout=RUN_TIMEOUT)

    with page.expect_download() as download_info:
        ui.button(cid, "jp-convo-export").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".convo.zip")
    exported = tmp_path / download.suggested_filename
    download.save_as(exported)
    with zipfile.ZipFile(exported) as archive:
        assert any(name.endswith("events.jsonl") for name in archive.namelist())

    # Importing the export makes a new conversation with the same history.
    ui.open_panel()
    with page.expect_file_chooser() as chooser_info:
        ui.panel.locator(".jp-convo-import").click()
    chooser_info.value.set_files(str(exported))
    imported = page.locator(".jp-convo-view").filter(
        has=page.locator(".jp-convo-row", has_text="Notes written.")
    )
    expect(imported).to_have_count(2, timeout=RUN_TIMEOUT)
    expect(ui.list_item(task)).to_have_count(2, timeout=RUN_TIMEOUT)

    # Open as notebook: saved next to the files and opened.
    ui.activate_view(cid).locator("button.jp-convo-open-notebook").click()
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook).to_be_visible(timeout=RUN_TIMEOUT)
    expect(notebook).to_contain_text("Notes written.", timeout=RUN_TIMEOUT)
    assert list(lab.root.glob("*.ipynb")), "the notebook was not saved in the root folder"

    # Replay: a new conversation re-runs the recorded step and reports it reproduced.
    ui.activate_view(cid).locator("button.jp-convo-replay").click()
    summary = page.locator(
        '.jp-convo-view .jp-convo-row[data-kind="replay_summary"]',
        has_text="1 of 1 steps reproduced, 0 diverged",
    )
    expect(summary).to_have_count(1, timeout=RUN_TIMEOUT)


def test_keyboard_and_command_palette(page: Any, lab: LabServer, ui_llm: ScriptedLLM) -> None:
    task = unique("Keyboard only task")
    ui_llm.add_script([reply("Typed without a mouse.")], match=task)
    ui = PanelDriver(page, lab)

    task_box = ui.panel.locator(".jp-convo-task")
    ui.run_from_palette("New Conversation", task_box)
    page.keyboard.type(task)
    page.keyboard.press("Control+Enter")
    view = page.locator(".jp-convo-view").filter(has=page.locator(".jp-convo-row", has_text=task))
    expect(view).to_have_count(1, timeout=RUN_TIMEOUT)
    expect(view.locator(".jp-convo-message")).to_be_focused()
    expect(view.locator(".jp-convo-row").last).to_contain_text(
        "Typed without a mouse.", timeout=RUN_TIMEOUT
    )

    # Search from the palette, then move into the list with the arrow key and open with Enter.
    view.locator(".jp-convo-message").press("Escape")
    search = ui.panel.locator(".jp-convo-search")
    ui.run_from_palette("Search Conversations", search)
    page.keyboard.type(task.split()[-1])
    expect(ui.list_items()).to_have_count(1, timeout=RUN_TIMEOUT)
    page.keyboard.press("ArrowDown")
    expect(ui.list_items().first).to_be_focused()
    page.keyboard.press("Enter")
    expect(ui.list_items().first).to_have_class(re.compile("jp-mod-selected"))
    expect(view.locator(".jp-convo-message")).to_be_focused()


def test_list_pages_through_many_conversations(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM
) -> None:
    """More conversations than a page (the tests' pageSize setting is 3): the list fetches
    page after page as it scrolls, and search pages too."""
    task = unique("Paged history")
    ui_llm.add_script([reply("Paged answer.")], match=task)
    ui = PanelDriver(page, lab)
    cid = ui.new_conversation(task)
    expect(ui.rows(cid, "message").last).to_contain_text("Paged answer.", timeout=RUN_TIMEOUT)
    export = httpx.get(lab.api_url(f"conversations/{cid}/export"), headers=lab.headers, timeout=30)
    assert export.status_code == 200, export.text
    copies = 2 * PAGE_SIZE + 2
    for _ in range(copies - 1):  # imports start no runtime: cheap conversations
        imported = httpx.post(
            lab.api_url("conversations/import"),
            headers={**lab.headers, "Content-Type": "application/zip"},
            content=export.content,
            timeout=30,
        )
        assert imported.status_code == 201, imported.text

    searches: list[str] = []
    page.on(
        "request",
        lambda request: (
            searches.append(request.url)
            if "/api/convo/conversations/search" in request.url
            else None
        ),
    )
    ui.open_panel()
    ui.search(task.split()[-1])
    expect(ui.list_item(task)).to_have_count(copies, timeout=RUN_TIMEOUT)
    ui.list_items().last.scroll_into_view_if_needed()
    expect(ui.panel.locator(".jp-convo-more")).to_have_count(0)
    paged = [url for url in searches if "page_id=" in url]
    assert len(paged) >= 2, searches  # 8 rows at 3 a page: two more pages after the first
    assert all(f"limit={PAGE_SIZE}" in url for url in searches), searches


# Every state a badge can show (models/state.ts displayState) and the sandbox badges.
BADGE_CLASSES = [
    *(
        f"jp-convo-badge jp-convo-badge-{state}"
        for state in (
            "starting",
            "loading",
            "running",
            "awaiting_user_input",
            "awaiting_user_confirmation",
            "finished",
            "paused",
            "rate_limited",
            "error",
            "stopped",
            "archived",
            "deleted",
            "unknown",
        )
    ),
    *(
        f"jp-convo-sandbox-badge jp-convo-sandbox-{kind}"
        for kind in ("confined", "unconfined", "no-network")
    ),
]
ADD_BADGES = """(node, classes) => {
  const box = document.createElement('div');
  box.className = 'jp-convo-test-badges';
  for (const css of classes) {
    const badge = document.createElement('span');
    badge.className = css;
    badge.textContent = css.split(' ').pop();
    box.appendChild(badge);
  }
  node.prepend(box);
}"""


def test_follows_the_stream_wide_tables_and_contrast(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM, output_dir: Path
) -> None:
    """A wide table scrolls sideways; the view ends at the bottom when a tall image loads
    last; scrolled up, it stays put and offers "Jump to latest (N new)"; every text of the
    list and the view, the selected row and every badge state meet WCAG AA in both
    themes."""
    task = unique("Chart the wide table")
    gate = f"later-{task}"
    ui_llm.add_script(
        [
            tool_call("python", {"code": WIDE_TABLE_CODE, "security_risk": "low"}),
            tool_call("python", {"code": tall_image_code(1400), "security_risk": "low"}),
            reply("Finished: the table and the plot."),
            reply("A later answer.", gate=gate),
        ],
        match=task,
    )
    ui = PanelDriver(page, lab)
    cid = ui.new_conversation(task)
    view = ui.view(cid)
    scroll = view.locator(".jp-convo-scroll")
    expect(ui.rows(cid, "message").last).to_contain_text(
        "Finished: the table and the plot.", timeout=RUN_TIMEOUT
    )
    table = ui.rows(cid, "python_output").locator("table").first
    expect(table).to_be_visible()
    assert table.evaluate(ONE_LINE_CELLS)
    assert table.evaluate(SCROLLS_SIDEWAYS)
    image = ui.rows(cid, "python_output").locator("img").last
    page.wait_for_function(IMAGE_LOADED, arg=image.element_handle())
    page.wait_for_function(AT_END, arg=scroll.element_handle())

    # Scrolled up, a new answer does not move the view: a button counts it.
    scroll.evaluate("node => { node.scrollTop = 0; }")
    jump = view.locator(".jp-convo-jump")
    expect(jump).to_be_hidden()
    sent = httpx.post(
        lab.api_url(f"conversations/{cid}/messages"),
        headers=lab.headers,
        json={"text": "One more thing"},
        timeout=30,
    )
    assert sent.status_code < 300, sent.text
    ui_llm.open_gate(gate)
    expect(jump).to_have_text(re.compile(r"Jump to latest \(\d+ new\)"), timeout=RUN_TIMEOUT)
    expect(ui.rows(cid, "message").last).to_contain_text("A later answer.", timeout=RUN_TIMEOUT)
    assert scroll.evaluate("node => node.scrollTop") < 50
    jump.click()
    page.wait_for_function(AT_END, arg=scroll.element_handle())
    expect(jump).to_be_hidden()

    # Contrast, light and dark: the list with this conversation selected, the view, and a
    # badge of every state.
    # The list selects the conversation in front, without a click.
    ui.open_panel()
    expect(ui.list_item(task)).to_have_class(re.compile("jp-mod-selected"))
    view.evaluate(ADD_BADGES, BADGE_CLASSES)
    # The check itself finds low contrast (grey on grey), so a pass below means something.
    probe = page.evaluate_handle(
        """() => {
          const probe = document.createElement('span');
          probe.textContent = 'grey on grey';
          probe.style.cssText = 'color: #999; background: #aaa';
          document.body.appendChild(probe);
          return probe;
        }"""
    )
    assert low_contrast(probe), "the contrast check found nothing in grey on grey"
    probe.evaluate("node => node.remove()")
    for theme in ("light", "dark"):
        ui.set_theme(dark=theme == "dark")
        problems = low_contrast(ui.panel) + low_contrast(view)
        assert not problems, (theme, problems)
        ui.panel.screenshot(path=str(output_dir / f"list-selected-{theme}.png"))
        view.screenshot(path=str(output_dir / f"conversation-badges-{theme}.png"))
    ui.set_theme(dark=False)
