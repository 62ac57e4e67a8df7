"""Normalisation: what differs between two runs of the same work is hidden, the rest kept."""

from __future__ import annotations

from jupyter_convo.events.schema import CommandOutputEvent, PythonError, PythonOutputEvent
from jupyter_convo.share.normalize import (
    WORKSPACE,
    normalize_text,
    observation_diff,
    rebase_text,
)

RUN_A = "/tmp/pytest-1/conversations/abc/workspace"
RUN_B = "/home/ann/.local/share/jupyter/convo/conversations/def/workspace"


def test_timestamps_clock_times_and_ls_dates_become_placeholders() -> None:
    text = "at 2026-03-04T05:06:07.891011Z and 2026-03-04 05:06:07+02:00; ls: Mar  4 05:06 a.csv"
    assert normalize_text(text) == "at <timestamp> and <timestamp>; ls: <date> a.csv"
    assert normalize_text("took 12:01:59.5 of wall time") == "took <time> of wall time"


def test_plain_dates_in_data_are_kept() -> None:
    assert normalize_text("2024-01-05,north,120.50") == "2024-01-05,north,120.50"


def test_memory_addresses_and_durations_are_hidden() -> None:
    text = "<Foo object at 0x7f3a2b1c9d80> ran in 1.25s (3 ms, 4.5 µs, real 0m0.003s)"
    assert normalize_text(text) == (
        "<Foo object at 0x<address>> ran in <duration> (<duration>, <duration>, real <duration>)"
    )
    assert normalize_text("0x10 is sixteen; x1s is a name") == "0x10 is sixteen; x1s is a name"


def test_temp_paths_and_workspaces_are_hidden() -> None:
    assert normalize_text("File /tmp/ipykernel_123/456.py, line 3") == "File <tmp>, line 3"
    assert normalize_text(f"cwd {RUN_A}/data") == f"cwd {WORKSPACE}/data"
    assert normalize_text(f"cwd {RUN_B}") == f"cwd {WORKSPACE}"
    assert normalize_text("cwd /srv/work/data", roots=["/srv/work"]) == f"cwd {WORKSPACE}/data"


def test_ansi_colours_are_dropped() -> None:
    assert normalize_text("\x1b[0;31mValueError\x1b[0m: bad") == "ValueError: bad"


def test_same_work_in_two_workspaces_has_no_diff() -> None:
    a = CommandOutputEvent(id=4, cause=3, command="pwd", exit_code=0, output=RUN_A, cwd=RUN_A)
    b = CommandOutputEvent(id=9, cause=8, command="pwd", exit_code=0, output=RUN_B, cwd=RUN_B)
    assert observation_diff(a, b) == ""


def test_a_different_output_gives_a_readable_unified_diff() -> None:
    a = PythonOutputEvent(id=4, cause=3, stdout="total 10\nrows 3\n", execution_count=1)
    b = PythonOutputEvent(id=9, cause=8, stdout="total 11\nrows 3\n", execution_count=7)
    diff = observation_diff(a, b)
    assert diff.startswith("--- recorded #4\n+++ replayed #9\n")
    assert "-  total 10" in diff and "+  total 11" in diff
    assert "rows 3" in diff  # context lines, one per output line
    assert "execution_count" not in diff


def test_images_compare_by_presence_not_bytes() -> None:
    a = PythonOutputEvent(display_data=[{"image/png": "AAAA", "text/plain": "<Figure>"}])
    b = PythonOutputEvent(display_data=[{"image/png": "BBBB", "text/plain": "<Figure>"}])
    c = PythonOutputEvent(display_data=[{"text/plain": "<Figure>"}])
    assert observation_diff(a, b) == ""
    assert "image/png" in observation_diff(a, c)


def test_a_missing_observation_is_a_diff() -> None:
    a = CommandOutputEvent(id=4, command="ls", output="x")
    assert "(no observation)" in observation_diff(a, None)
    assert observation_diff(None, None) == ""


def test_long_diffs_are_cut() -> None:
    a = CommandOutputEvent(output="a\n" * 5000)
    b = CommandOutputEvent(output="b\n" * 5000)
    diff = observation_diff(a, b, max_chars=1000)
    assert len(diff) < 1100 and diff.endswith("more characters of diff]")


def test_rebase_points_recorded_paths_at_the_new_workspace() -> None:
    text = f"cat {RUN_A}/sales.csv > {RUN_A}/out.txt"
    assert rebase_text(text, [RUN_A], "/new/ws") == "cat /new/ws/sales.csv > /new/ws/out.txt"
    assert rebase_text("cat sales.csv", [RUN_A], "/new/ws") == "cat sales.csv"


def test_a_traceback_laid_out_by_another_ipython_still_reproduces() -> None:
    def failure(ename: str, traceback: list[str]) -> PythonOutputEvent:
        error = PythonError(ename=ename, evalue="could not convert 'x'", traceback=traceback)
        return PythonOutputEvent(id=3, error=error)

    ipython8 = ["ValueError    Traceback (most recent call last)", "----> 9 float(x)"]
    ipython9 = [
        "ValueError    Traceback (most recent call last)",
        "Cell In[2], line 9",
        "  9 float(x)",
    ]
    assert observation_diff(failure("ValueError", ipython8), failure("ValueError", ipython9)) == ""
    assert "TypeError" in observation_diff(
        failure("ValueError", ipython8), failure("TypeError", ipython8)
    )
    assert observation_diff(failure("ValueError", ipython8), failure("ValueError", []))
