"""Titles from first messages and metadata folded from events (jupyter_convo.manager)."""

from __future__ import annotations

import pytest

from jupyter_convo.events.schema import (
    AgentState,
    AgentStateEvent,
    ConversationStatus,
    ErrorEvent,
    LLMCallEvent,
    MessageEvent,
    StatusEvent,
    TitleEvent,
)
from jupyter_convo.manager.metadata import RUNTIME_DIED, MetadataFold
from jupyter_convo.manager.title import FALLBACK_TITLE, title_from_message


def test_title_is_the_first_non_blank_line_with_whitespace_collapsed() -> None:
    assert title_from_message("\n\n  clean   sales.csv \nthen plot it") == "clean sales.csv"


def test_long_title_is_cut_at_a_word_boundary_with_an_ellipsis() -> None:
    text = "Load the quarterly revenue spreadsheet and plot revenue by month for every region"
    title = title_from_message(text)
    assert len(title) <= 60
    assert title.endswith("…")
    assert text.startswith(title[:-1])
    assert text[len(title) - 1] == " "  # the cut fell between words


def test_a_single_overlong_word_is_cut_inside_it() -> None:
    title = title_from_message("x" * 100, max_chars=20)
    assert title == "x" * 19 + "…"


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_blank_message_gets_the_fallback_title(text: str) -> None:
    assert title_from_message(text) == FALLBACK_TITLE


def test_too_small_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        title_from_message("hello", max_chars=1)


def _numbered(*events):  # type: ignore[no-untyped-def]
    return [event.model_copy(update={"id": i}) for i, event in enumerate(events)]


def test_fold_sums_llm_calls_and_follows_status_and_title() -> None:
    fold = MetadataFold()
    events = _numbered(
        StatusEvent(status="STARTING_RUNTIME"),
        MessageEvent(source="user", text="plot revenue\nplease"),
        StatusEvent(status="READY"),
        LLMCallEvent(model="m1", prompt_tokens=10, completion_tokens=3, cost=0.5),
        AgentStateEvent(state=AgentState.RUNNING),
        LLMCallEvent(model="m1", prompt_tokens=7, completion_tokens=2, cost=0.25),
        TitleEvent(title="Revenue plot"),
        AgentStateEvent(state=AgentState.AWAITING_USER_INPUT),
    )
    for event in events:
        assert fold.apply(event)
    changes = fold.take_changes()
    assert changes["prompt_tokens"] == 17
    assert changes["completion_tokens"] == 5
    assert changes["cost"] == pytest.approx(0.75)
    assert changes["title"] == "Revenue plot"
    assert changes["status"] is ConversationStatus.RUNNING
    assert changes["agent_state"] == "awaiting_user_input"
    assert changes["last_event_id"] == 7
    assert changes["updated_at"] == events[-1].timestamp
    assert fold.take_changes() == {}


def test_fold_ignores_events_it_has_seen() -> None:
    fold = MetadataFold()
    call = LLMCallEvent(id=0, model="m", prompt_tokens=5)
    assert fold.apply(call)
    assert not fold.apply(call)
    assert fold.prompt_tokens == 5


def test_first_user_message_titles_an_untitled_conversation_only() -> None:
    untitled = MetadataFold()
    untitled.apply(MessageEvent(id=0, source="agent", text="hello from the agent"))
    assert untitled.title is None
    untitled.apply(MessageEvent(id=1, source="user", text="count the rows"))
    untitled.apply(MessageEvent(id=2, source="user", text="and the columns"))
    assert untitled.title == "count the rows"
    titled = MetadataFold(title="Given")
    titled.apply(MessageEvent(id=0, source="user", text="count the rows"))
    assert titled.title == "Given"


def test_agent_error_sets_error_status_and_a_new_run_clears_it() -> None:
    fold = MetadataFold()
    fold.apply(StatusEvent(id=0, status="READY"))
    fold.apply(AgentStateEvent(id=1, state=AgentState.ERROR, reason="LLM_AUTHENTICATION: bad key"))
    assert fold.status is ConversationStatus.ERROR
    assert fold.error == "LLM_AUTHENTICATION: bad key"
    fold.apply(AgentStateEvent(id=2, state=AgentState.RUNNING))
    assert fold.status is ConversationStatus.RUNNING
    assert fold.error is None


def test_runtime_died_and_clean_stop() -> None:
    died = MetadataFold()
    died.apply(StatusEvent(id=0, status="READY"))
    died.apply(ErrorEvent(id=1, code=RUNTIME_DIED, message="killed"))
    assert died.status is ConversationStatus.ERROR
    assert died.error == f"{RUNTIME_DIED}: killed"
    stopped = MetadataFold()
    stopped.apply(StatusEvent(id=0, status="READY"))
    stopped.apply(AgentStateEvent(id=1, state=AgentState.STOPPED))
    assert stopped.status is ConversationStatus.RUNNING
    stopped.apply(StatusEvent(id=2, status="STOPPED"))
    assert stopped.status is ConversationStatus.STOPPED


def test_snapshot_can_leave_the_title_alone() -> None:
    fold = MetadataFold()
    fold.apply(TitleEvent(id=0, title="From the log"))
    assert "title" not in fold.snapshot(include_title=False)
    assert fold.snapshot()["title"] == "From the log"
