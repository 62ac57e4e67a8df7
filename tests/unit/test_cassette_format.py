"""The cassette stores each message once: linear size, the same entries as whole requests.

"The old representation" below is what the cassette stored before request patches: every
line a whole ``CassetteEntry``, redacted; its entries are the reference every reconstructed
entry must equal.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_convo.agent.cassette import Cassette, CassetteEntry, CassetteError
from jupyter_convo.events.redact import SecretRegistry

ROOT = Path(__file__).resolve().parents[2]
OLD_FORMAT = ROOT / "notebooks" / "runs" / "sales-summary" / "cassette.jsonl"
SECRET = "sk-cassette-format-secret-0123456789"
TOOLS = [{"type": "function", "function": {"name": f"tool{i}", "parameters": {}}} for i in range(5)]


def request(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "base_url": "http://llm.local/v1",
        "messages": messages,
        "tools": TOOLS,
        "params": {"temperature": 0.2, "max_tokens": None, "stream": True},
        **extra,
    }


def old_representation(
    secrets: SecretRegistry, req: dict[str, Any], outcome: dict[str, Any]
) -> CassetteEntry:
    """The entry the cassette stored (and read back) before patches: the whole request."""
    whole = CassetteEntry(timestamp=datetime.now(timezone.utc), request=req, **outcome)
    return CassetteEntry.model_validate_json(secrets.redact(whole.model_dump_json()))


def comparable(entry: CassetteEntry) -> dict[str, Any]:
    return entry.model_dump(exclude={"timestamp"})


def step_messages(n: int) -> list[dict[str, Any]]:
    """The two messages one agent step adds: the tool call and its ~500-byte output."""
    return [
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{n}", "name": "t"}]},
        {"role": "tool", "tool_call_id": f"c{n}", "content": f"step {n:04d} " + "o" * 490},
    ]


def test_each_added_message_costs_the_same_bytes_whatever_the_history(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    cassette = Cassette(path)
    history: list[dict[str, Any]] = [{"role": "system", "content": "s" * 4000}]
    response = {"content": None, "tool_calls": [{"id": "x", "name": "t", "arguments": "{}"}]}
    for n in range(200):
        history += step_messages(n)
        cassette.record(request(list(history)), response, None, 0.5)
    cassette.close()
    lines = path.read_bytes().split(b"\n")[:-1]
    assert len(lines[0]) > 4000  # the first line holds the whole request once
    added = len(json.dumps(step_messages(0))) + len(json.dumps(response))
    later = [len(line) for line in lines[1:]]
    # Every later line holds its two new messages, the response and a fixed envelope:
    # a line at 400 messages of history is no bigger than one at 4 messages.
    assert max(later) <= added + 400
    assert max(later) - min(later) <= 16  # only digits differ
    whole_last = len(json.dumps(request(history)))
    assert path.stat().st_size < 2 * whole_last  # vs 200 whole requests before


def test_entries_equal_the_old_representation(tmp_path: Path) -> None:
    secrets = SecretRegistry([SECRET])
    cassette = Cassette(tmp_path / "cassette.jsonl", secrets=secrets)
    ok = {"response": {"content": "fine"}, "error": None, "latency": 0.25}
    failed = {
        "response": None,
        "error": {"code": "LLM_UNAVAILABLE", "message": "503", "status_code": 503},
        "latency": 1.5,
        "attempt": 1,
        "final": False,
    }
    history = [{"role": "system", "content": "you help"}, {"role": "user", "content": "hi"}]
    calls: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (request(list(history)), failed),  # a failed attempt, then its retry: same request
        (request(list(history)), {**ok, "attempt": 2}),
    ]
    history += step_messages(1)
    calls.append((request(list(history)), ok))  # the history grew
    history.append({"role": "user", "content": f"my key is {SECRET}"})
    calls.append((request(list(history)), ok))  # a secret in a new message
    condensed = [history[0], {"role": "user", "content": "summary of the above"}]
    calls.append((request(list(condensed)), ok))  # the history was rewritten
    calls.append((request(condensed + step_messages(2), tools=None), ok))  # tools gone
    calls.append(({"model": "m", "messages": condensed}, ok))  # fields removed
    calls.append((request([]), ok))  # no messages at all
    calls.append(({"model": "m", "messages": "not a list"}, ok))  # not patchable: whole

    returned = [cassette.record(req, **outcome) for req, outcome in calls]
    cassette.close()

    expected = [comparable(old_representation(secrets, req, o)) for req, o in calls]
    assert [comparable(entry) for entry in returned] == expected
    assert [comparable(entry) for entry in Cassette(cassette.path).entries()] == expected
    assert SECRET.encode() not in cassette.path.read_bytes()
    assert b'"patch"' in cassette.path.read_bytes()


def test_an_old_format_cassette_reads_as_before() -> None:
    lines = OLD_FORMAT.read_bytes().splitlines()
    old = [CassetteEntry.model_validate_json(line) for line in lines]
    assert len(old) > 5 and b'"patch"' not in OLD_FORMAT.read_bytes()
    assert Cassette(OLD_FORMAT).entries() == old


def test_recording_onto_an_old_format_cassette(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    shutil.copy(OLD_FORMAT, path)
    old = Cassette(path).entries()
    cassette = Cassette(path)
    first = request([{"role": "user", "content": "continued"}])
    second = request([*first["messages"], {"role": "assistant", "content": "yes"}])
    cassette.record(first, {"content": "a"}, None, 0.1)
    cassette.record(second, {"content": "b"}, None, 0.1)
    cassette.close()
    entries = Cassette(path).entries()
    assert entries[: len(old)] == old
    assert [e.request for e in entries[len(old) :]] == [first, second]
    new_lines = path.read_bytes().splitlines()[len(old) :]
    assert [b'"request"' in line for line in new_lines] == [True, False]  # whole, then patch


def test_two_writers_on_one_file_never_patch_each_others_lines(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    one, two = Cassette(path), Cassette(path)
    requests = []
    for n in range(6):
        writer, name = (one, "one") if n % 2 == 0 else (two, "two")
        req = request([{"role": "user", "content": f"{name} {i}"} for i in range(n + 1)])
        writer.record(req, {"content": str(n)}, None, 0.1)
        requests.append(req)
    one.close()
    two.close()
    assert [entry.request for entry in Cassette(path).entries()] == requests


def test_a_callers_later_changes_do_not_reach_the_next_patch(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "cassette.jsonl")
    messages = [{"role": "user", "content": "first"}]
    cassette.record(request(messages), {"content": "a"}, None, 0.1)
    messages[0]["content"] = "changed in place"  # then sent again with one more message
    messages.append({"role": "assistant", "content": "second"})
    cassette.record(request(messages), {"content": "b"}, None, 0.1)
    cassette.close()
    assert [e.request["messages"] for e in cassette.entries()] == [
        [{"role": "user", "content": "first"}],
        [
            {"role": "user", "content": "changed in place"},
            {"role": "assistant", "content": "second"},
        ],
    ]


@pytest.mark.parametrize(
    "line, reason",
    [
        (
            '{"timestamp": "2026-01-01T00:00:00Z", "patch": {"keep": 0}, "response": {}}',
            "no request",
        ),
        (
            '{"timestamp": "2026-01-01T00:00:00Z", "request": {}, "patch": {"keep": 0}, '
            '"response": {}}',
            "exactly one of request or patch",
        ),
    ],
)
def test_a_patch_that_cannot_apply_names_its_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "cassette.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(CassetteError, match=f"line 1: .*{reason}"):
        Cassette(path).entries()


def test_a_patch_keeping_more_messages_than_there_were_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    cassette = Cassette(path)
    cassette.record(request([{"role": "user", "content": "one"}]), {"content": "a"}, None, 0.1)
    cassette.close()
    bad = {"timestamp": "2026-01-01T00:00:00Z", "patch": {"keep": 5}, "response": {}}
    with path.open("a") as handle:
        handle.write(json.dumps(bad) + "\n")
    with pytest.raises(CassetteError, match="line 2: the patch keeps 5 messages"):
        Cassette(path).entries()
