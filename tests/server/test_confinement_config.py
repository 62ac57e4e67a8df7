"""``c.Confinement`` in a real Jupyter server's config: the network option over REST, and a
server whose bubblewrap is missing (simulated: ``bwrap_path`` names no file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from server_harness import Api, state_is
from traitlets.config import Config

from jupyter_convo.agent.confine import probe
from jupyter_convo.testing import ScriptedLLM, reply
from jupyter_convo.testing.jupyter_server import QUIET_EXTENSIONS, start_server


@pytest.fixture
def confinement() -> dict[str, Any]:
    """``c.Confinement`` values of the test's server."""
    return {}


@pytest.fixture
def jp_server_config(jp_server_config: Config, confinement: dict[str, Any]) -> Config:
    jp_server_config["Confinement"] = Config(confinement)
    return jp_server_config


@pytest.mark.skipif(probe("bwrap")[0] is None, reason="needs bubblewrap (scripts/test.sh)")
async def test_a_conversation_started_without_network_says_so(
    alice: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("offline and fine")], match="offline")
    cid = (await alice.start("offline please", network=False))["conversation_id"]
    socket = await open_socket(cid)
    await socket.until(state_is("awaiting_user_input"))
    page = await alice.get(f"conversations/{cid}/events/search", kind="sandbox")
    [event] = page["items"]
    assert event["confined"] and event["mechanism"] == "bubblewrap"
    assert event["network"] is False and event["network_off_by"] == "conversation"
    bad = await alice.error("POST", "conversations", body={"network": "maybe"})
    assert bad.code == 400 and "network" in bad.message


class TestWithoutBubblewrap:
    @pytest.fixture
    def confinement(self, tmp_path: Path) -> dict[str, Any]:
        return {"bwrap_path": str(tmp_path / "no-bwrap"), "required": True}

    async def test_required_refuses_to_start_conversations(self, alice: Api) -> None:
        updates = await alice.call(
            "POST", "conversations/stream-start", body={"initial_message": "hello"}
        )
        final = updates[-1]
        assert final["status"] == "ERROR"
        assert "c.Confinement.required" in final["detail"]
        assert "no-bwrap" in final["detail"] and "apt install bubblewrap" in final["detail"]
        conversation = await alice.get(f"conversations/{final['conversation_id']}")
        assert conversation["status"] == "ERROR"
        assert "c.Confinement.required" in conversation["error"]


def test_a_server_that_cannot_jail_warns_when_it_starts(tmp_path: Path) -> None:
    """A real ``jupyter server`` process: its log says the tools will run unconfined, and
    how to fix it, before any conversation starts."""
    (tmp_path / "root").mkdir()
    server = start_server(
        [
            f"--ConvoExtension.data_dir={tmp_path / 'data'}",
            f"--Confinement.bwrap_path={tmp_path / 'no-bwrap'}",
            "--ServerApp.allow_root=True",
            "--ServerApp.jpserver_extensions="
            + repr({**dict.fromkeys(QUIET_EXTENSIONS, False), "jupyter_convo": True}),
        ],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
        cwd=tmp_path / "root",
        log_path=tmp_path / "server.log",
    )
    try:
        text = server.log_text()
    finally:
        server.stop()
    assert "run UNCONFINED" in text and "no-bwrap" in text, text
    assert "apt install bubblewrap" in text and "c.Confinement.required = True" in text
