"""ConversationState: when a conversation counts as settled, metrics, awaiting actions."""

from __future__ import annotations

from typing import Any

from jupyter_convo.kernel.state import ConversationState


def ev(event_id: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "kind": kind, "source": fields.pop("source", "environment"), **fields}


def state_of(*events: dict[str, Any]) -> ConversationState:
    state = ConversationState()
    for event in events:
        state.apply(event)
    return state


def test_a_new_conversation_settles_when_the_agent_waits() -> None:
    state = state_of(ev(0, "status", status="STARTING_RUNTIME"), ev(1, "status", status="READY"))
    assert not state.settled
    state.apply(ev(2, "agent_state", state="loading"))
    state.apply(ev(3, "message", source="user", text="task"))
    state.apply(ev(4, "agent_state", state="running"))
    assert not state.settled
    state.apply(ev(5, "message", source="agent", text="answer"))
    state.apply(ev(6, "agent_state", state="awaiting_user_input"))
    assert state.settled and state.last_message == "answer" and state.last_id == 6


def test_a_sent_message_unsettles_until_the_agent_answers() -> None:
    state = state_of(ev(0, "agent_state", state="awaiting_user_input"))
    state.expect(("message", "more"))
    assert not state.settled
    state.apply(ev(1, "message", source="user", text="more"))
    assert not state.settled and not state.pending
    state.apply(ev(2, "agent_state", state="running"))
    state.apply(ev(3, "agent_state", state="finished"))
    assert state.settled


def test_a_failed_send_is_forgotten() -> None:
    state = state_of(ev(0, "agent_state", state="awaiting_user_input"))
    state.expect(("message", "lost"))
    state.forget(("message", "lost"))
    assert state.settled


def test_confirmation_cycle_and_python_tracking() -> None:
    state = state_of(
        ev(0, "python", source="agent", code="x", confirmation="awaiting"),
        ev(1, "agent_state", state="awaiting_user_confirmation"),
    )
    assert state.settled and state.awaiting is not None and state.awaiting["id"] == 0
    assert state.python_running is None  # waiting for the user, not for a kernel
    state.expect(("confirmation", 0))
    assert not state.settled
    state.apply(ev(2, "confirmation", source="user", cause=0, confirmed=True))
    assert state.awaiting is None and state.python_running == 0 and not state.settled
    state.apply(ev(3, "agent_state", state="running"))
    state.apply(ev(4, "python_output", cause=0, stdout="ok"))
    assert state.python_running is None
    state.apply(ev(5, "agent_state", state="awaiting_user_input"))
    assert state.settled


def test_runtime_stop_settles_and_restart_needs_a_new_settle() -> None:
    state = state_of(ev(0, "agent_state", state="running"), ev(1, "status", status="STOPPED"))
    assert state.settled and state.status == "STOPPED"
    state.settle_after(1)
    assert not state.settled
    state.apply(ev(2, "status", status="STARTING_RUNTIME"))
    state.apply(ev(3, "agent_state", state="awaiting_user_input"))
    assert state.settled


def test_metadata_of_an_ended_run_settles_and_sets_the_title() -> None:
    state = ConversationState()
    state.apply_metadata({"title": "T", "status": "ERROR", "last_event_id": 4, "error": "died"})
    assert state.settled and state.title == "T" and state.error == "died"
    state.apply(ev(5, "title", source="user", title="Renamed"))
    assert state.title == "Renamed"


def test_metrics_add_up_llm_calls() -> None:
    state = state_of(
        ev(0, "llm_call", model="m", prompt_tokens=10, completion_tokens=2, cost=0.5, latency=1.0),
        ev(1, "llm_call", model="m", prompt_tokens=5, completion_tokens=1, cost=0.25, latency=0.5),
    )
    assert state.metrics.as_dict() == {
        "prompt_tokens": 15,
        "completion_tokens": 3,
        "total_tokens": 18,
        "cost": 0.75,
        "llm_calls": 2,
        "latency": 1.5,
    }


def test_a_followed_history_is_not_settled_halfway() -> None:
    state = ConversationState()
    state.history_ends_at(3)
    state.apply(ev(0, "agent_state", state="stopped"))
    assert not state.settled  # later events (a restart) are still on their way
    state.apply(ev(1, "status", status="STARTING_RUNTIME"))
    state.apply(ev(2, "agent_state", state="loading"))
    state.apply(ev(3, "agent_state", state="awaiting_user_input"))
    assert state.settled
