"""The committed example run is what its hand-written script gives with today's tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from share_helpers import EXAMPLE, EXAMPLE_SPEC, executed_actions

from jupyter_convo.agent.history import tool_call_for
from jupyter_convo.events.schema import ActionBase
from jupyter_convo.share.normalize import observation_diff
from jupyter_convo.share.replay import recorded_observations
from jupyter_convo.share.source import load_source, source_from_conversation
from jupyter_convo.testing.examples import EXAMPLE_TAG, record_run

pytestmark = pytest.mark.integration


async def test_recording_the_script_again_gives_the_committed_run(tmp_path: Path) -> None:
    directory, metadata = await record_run(EXAMPLE_SPEC, tmp_path / "conversations")
    assert metadata.tags["example"] == EXAMPLE_TAG and "written by hand" in metadata.tags["note"]
    assert metadata.id == "example-sales-summary" and metadata.status.value == "STOPPED"

    fresh = source_from_conversation(directory, metadata)
    committed = load_source(EXAMPLE)
    assert committed.metadata is not None
    assert committed.metadata.tags == metadata.tags  # labelled hand-written in its meta
    assert [e.kind for e in fresh.events] == [e.kind for e in committed.events]
    fresh_actions = [e for e in fresh.events if isinstance(e, ActionBase)]
    committed_actions = [e for e in committed.events if isinstance(e, ActionBase)]
    assert [tool_call_for(a) for a in fresh_actions] == [
        tool_call_for(a) for a in committed_actions
    ]

    fresh_answers = recorded_observations(fresh.events)
    committed_answers = recorded_observations(committed.events)
    diffs = [
        observation_diff(
            committed_answers[old.id],
            fresh_answers[new.id],
            recorded_roots=committed.workspace_roots,
            replayed_roots=fresh.workspace_roots,
        )
        for old, new in zip(executed_actions(committed), executed_actions(fresh), strict=True)
    ]
    assert diffs == [""] * 9, "re-record with python notebooks/runs/record_examples.py"
    assert [answer(e.response) for e in fresh.cassette] == [
        answer(e.response) for e in committed.cassette
    ]


def answer(response: dict[str, Any] | None) -> dict[str, Any]:
    """What the LLM said, without the timing of the call."""
    return {k: v for k, v in (response or {}).items() if k != "latency"}
