"""The one event fold against the shared fixtures (the side panel's Jest test reads them too).

Each fixture folds twice: from wire dicts (what the kernel and the panel get) and from the
pydantic events (what the server folds into its metadata row); both give the expected state.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from jupyter_convo.events.fold import ConversationFold
from jupyter_convo.events.schema import event_from_dict
from jupyter_convo.kernel.state import ConversationState
from jupyter_convo.manager.metadata import MetadataFold

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "fold").glob("*.json"))
# The kernel folds whole histories, never from a stored row.
HISTORIES = [p for p in FIXTURES if json.loads(p.read_text(encoding="utf-8"))["start"] is None]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_fixtures() -> None:
    assert len(FIXTURES) >= 6 and HISTORIES


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_wire_events_fold_to_the_expected_state(path: Path) -> None:
    fixture = load(path)
    fold = ConversationFold(**(fixture["start"] or {}))
    for event in fixture["events"]:
        fold.apply(event)
    assert fold.summary() == fixture["expected"]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_model_events_fold_the_same_way(path: Path) -> None:
    fixture = load(path)
    fold = MetadataFold(**(fixture["start"] or {}))
    for event in fixture["events"]:
        fold.apply(event_from_dict(dict(event)))
    summary = fold.summary()
    expected = dict(fixture["expected"])
    assert isinstance(summary.pop("updated_at"), datetime | None)
    expected.pop("updated_at")
    assert summary == expected


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_the_kernel_state_reads_the_same_fold(path: Path) -> None:
    fixture = load(path)
    state = ConversationState()
    for event in fixture["events"]:
        state.apply(event)
    expected = fixture["expected"]
    assert state.title == expected["title"]
    assert state.status == expected["status"]
    assert state.agent_state == expected["agent_state"]
    assert state.error == expected["error"]
    assert state.last_message == expected["last_message"]
    assert (state.awaiting or {}).get("id") == expected["awaiting_id"]
    metrics = state.metrics.as_dict()
    assert metrics["prompt_tokens"] == expected["prompt_tokens"]
    assert metrics["llm_calls"] == expected["llm_calls"]
