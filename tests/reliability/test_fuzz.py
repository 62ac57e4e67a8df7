"""Schemathesis fuzzes every route of docs/openapi.yaml against a live server: no 5xx.

Generated requests are sent as alice. Path parameters name, in turn, a running
conversation, a stopped one, another user's, and whatever hypothesis made up, so the
handlers behind the 404 get fuzzed too. Requests that would start a runtime (a valid
create, a restart of the stopped conversation) cost a process each: a small budget of them
is sent, the rest are skipped or pointed at the running conversation. Examples per route
are bounded (``FUZZ_EXAMPLES``) and derandomized, so the file ends in about two minutes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from live_server import ALICE, BOB, LiveServer
from pydantic import ValidationError

from jupyter_convo.server.models import CreateConversationRequest
from jupyter_convo.testing import ScriptedLLM, reply

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
RUNTIME_STARTS = int(os.environ.get("FUZZ_RUNTIME_STARTS", "6"))
CREATES = {"POST /api/convo/conversations", "POST /api/convo/conversations/stream-start"}
RESTARTS = {
    "POST /api/convo/conversations/{conversation_id}/start",
    "POST /api/convo/conversations/{conversation_id}/messages",
    "POST /api/convo/conversations/{conversation_id}/events",
}

schema = schemathesis.openapi.from_path(DOCUMENT)


class Targets:
    """Conversation ids the fuzzer's path parameters are swapped for, and the budget of
    requests that start a runtime."""

    def __init__(self, running: str, stopped: str, foreign: str) -> None:
        self.running = running
        self.stopped = stopped
        self.ids = [running, stopped, foreign]
        self.rng = random.Random(8)
        self.starts_left = RUNTIME_STARTS

    def pick(self, generated: str, label: str) -> str:
        choice = self.rng.randrange(len(self.ids) + 1)
        picked = self.ids[choice] if choice < len(self.ids) else generated
        if picked == self.stopped and label in RESTARTS and not self.spend():
            return self.running
        return picked

    def spend(self) -> bool:
        if self.starts_left <= 0:
            return False
        self.starts_left -= 1
        return True


def _start(client: httpx.Client, body: dict[str, Any]) -> str:
    updates = client.post("conversations/stream-start", json=body).json()
    assert updates[-1]["status"] == "READY", updates
    return str(updates[-1]["conversation_id"])


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    # Few runtimes at once: creates beyond it stop alice's oldest.
    return {"keep_runtimes_on_shutdown": False, "max_concurrent_conversations": 3}


@pytest.fixture(scope="module")
def targets(server: LiveServer, llm: ScriptedLLM) -> Iterator[Targets]:
    llm.add_script([reply("fuzz target waiting"), reply("again")], match="fuzz target")
    # remember-prompt asks the LLM; a failing LLM is a 502 by design, so make it answer.
    llm.add_script([reply("<prompt>Keep notes short.</prompt>")], match="updating AGENTS.md")
    with server.client(ALICE) as alice, server.client(BOB) as bob:
        stopped = _start(alice, {"initial_message": "fuzz target stopped"})
        alice.post(f"conversations/{stopped}/stop").raise_for_status()
        foreign = _start(bob, {"initial_message": "fuzz target of bob"})
        bob.post(f"conversations/{foreign}/stop").raise_for_status()
        running = _start(alice, {"initial_message": "fuzz target running"})
        (server.root / "notes.txt").write_text("a file in the server root\n")
        yield Targets(running, stopped, foreign)


def _starts_a_runtime(label: str, body: Any) -> bool:
    if label not in CREATES:
        return False
    try:
        CreateConversationRequest.model_validate(body if body is not None else {})
    except ValidationError:
        return False
    return True


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_route_answers_5xx(case: Any, server: LiveServer, targets: Targets) -> None:
    label = f"{case.method.upper()} {case.operation.path}"
    body = getattr(case, "body", None)
    if _starts_a_runtime(label, body) and not targets.spend():
        return  # the budget of runtime starts is spent: invalid bodies still go through
    if case.path_parameters and "conversation_id" in case.path_parameters:
        case.path_parameters["conversation_id"] = targets.pick(
            case.path_parameters["conversation_id"], label
        )
    response = case.call(base_url=server.url.rstrip("/"), headers=dict(ALICE), timeout=60)
    assert response.status_code < 500, (
        f"{label} answered {response.status_code}: {response.text[:2000]}\n"
        f"reproduce: {case.as_curl_command()}"
    )
