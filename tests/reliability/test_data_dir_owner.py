"""One data dir, one owner: a second Jupyter server on it is refused and harms nothing;
the next server takes over from a dead one; a runtime that lost its record is found again.

Two ``jupyter lab`` of one user share the default data dir. Before, the second one's start
"found again" the first one's runtimes, removed their records and marked a running
conversation ERROR; after a restart the runtime was orphaned, holding its log lock, and
``messages``/``start`` answered 500 until someone killed it by hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from live_server import ALICE, LiveServer, live_server
from reliability_helpers import Subscriber, astart, state_is

from jupyter_convo.manager.sandboxes.process import pid_alive
from jupyter_convo.testing import ScriptedLLM, reply

CONFIG = {"keep_runtimes_on_shutdown": False, "max_concurrent_conversations": 30}


@pytest.fixture
def server(llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The first server, of this test alone (the tests kill it)."""
    with live_server(tmp_path_factory.mktemp("first"), llm.base_url, config=CONFIG) as up:
        yield up


@pytest.fixture
def second(
    server: LiveServer, llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Another server (its own root and log) configured on the first one's data dir."""
    other = SharingServer(
        tmp_path_factory.mktemp("second"), llm.base_url, config=CONFIG, shared=server.data_dir
    )
    yield other
    other.stop()
    server.kill_runtimes()


@dataclass
class SharingServer(LiveServer):
    """A live server whose data dir is another's."""

    shared: Path = Path()

    @property
    def data_dir(self) -> Path:
        return self.shared

    def kill_runtimes(self) -> None:
        """Not on stop: the runtimes in the shared dir may be the other server's (the
        fixture kills what is left at the end)."""


def record(server: LiveServer, cid: str) -> dict[str, Any]:
    path = server.data_dir / "conversations" / cid / "runtime.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def answered(server: LiveServer, cid: str, text: str, expected: str) -> None:
    """A message is taken (202) and the agent answers it."""
    watcher = await Subscriber.connect(server, cid)
    async with server.async_client(ALICE) as alice:
        sent = await alice.post(f"conversations/{cid}/messages", json={"text": text})
        assert sent.status_code == 202, sent.text
    await watcher.until(lambda e: e["kind"] == "message" and e.get("text") == expected)
    watcher.close()


async def test_a_second_server_is_refused_and_the_next_one_takes_over(
    server: LiveServer, second: LiveServer, llm: ScriptedLLM
) -> None:
    llm.add_script(
        [reply("owned"), reply("still owned"), reply("taken over"), reply("adopted")],
        match="owner test",
    )
    async with server.async_client(ALICE) as alice:
        cid = await astart(alice, "owner test")
    watcher = await Subscriber.connect(server, cid)
    await watcher.until(state_is("awaiting_user_input"))
    watcher.close()
    before = record(server, cid)

    # A second server on the same data dir: up, but its jupyter-convo refuses, naming us.
    second.start()
    with second.client(ALICE) as client:
        refused = client.get("conversations/search")
    assert refused.status_code == 503, refused.text
    message = refused.json()["message"]
    assert f"pid {server.proc.pid}" in message and server.url in message, message  # type: ignore[union-attr]
    assert "one data dir has one owner" in message
    assert f"pid {server.proc.pid}" in second.log_text()  # type: ignore[union-attr]
    second.stop()

    # ... and harmed nothing: the first server's runtime, record and conversation are whole.
    assert record(server, cid) == before and pid_alive(before["pid"])
    with server.client(ALICE) as alice:
        assert alice.get(f"conversations/{cid}").json()["status"] == "RUNNING"
    await answered(server, cid, "are you there?", "still owned")

    # The first server dies (its lock with it): the next server takes the data dir over
    # and finds the runtime again.
    server.kill()
    second.start()
    with second.client(ALICE) as client:
        runtimes = client.get("runtimes").json()
    assert [r["conversation_id"] for r in runtimes] == [cid]
    await answered(second, cid, "new server?", "taken over")

    # Its record lost (as the old second server did), the runtime still holds the log's
    # lock: the next start finds it again instead of failing on that lock.
    second.kill()
    (second.data_dir / "conversations" / cid / "runtime.json").unlink()
    second.start()
    with second.client(ALICE) as client:
        runtimes = client.get("runtimes").json()
        assert [r["conversation_id"] for r in runtimes] == [cid]
        assert client.get(f"conversations/{cid}").json()["status"] == "RUNNING"
    assert record(second, cid)["pid"] == before["pid"], "the same runtime, adopted"
    await answered(second, cid, "adopted?", "adopted")


async def test_a_runtime_that_cannot_be_taken_over_is_stopped_not_left_holding_the_lock(
    server: LiveServer, second: LiveServer, llm: ScriptedLLM
) -> None:
    llm.add_script([reply("orphan"), reply("after the orphan")], match="orphan test")
    async with server.async_client(ALICE) as alice:
        cid = await astart(alice, "orphan test")
    watcher = await Subscriber.connect(server, cid)
    await watcher.until(state_is("awaiting_user_input"))
    watcher.close()
    pid = record(server, cid)["pid"]
    server.kill()
    conversation = server.data_dir / "conversations" / cid
    (conversation / "runtime.json").unlink()
    (conversation / "runtime.ready").unlink()  # nothing says where it listens any more
    second.start()
    with second.client(ALICE) as client:
        assert client.get("runtimes").json() == []
        meta = client.get(f"conversations/{cid}").json()
    assert not pid_alive(pid), "the orphaned runtime was stopped"
    assert meta["status"] == "ERROR" and "RUNTIME_DIED" in meta["error"], meta
    await answered(second, cid, "start again", "after the orphan")  # not a 500


def test_the_owner_lock_names_no_token(server: LiveServer) -> None:
    with server.client(ALICE) as alice:  # answered once the manager has started
        assert alice.get("conversations/search").status_code == 200
    lock = json.loads((server.data_dir / "owner.lock").read_text())
    assert lock["pid"] == server.proc.pid and lock["url"] == server.url  # type: ignore[union-attr]
    assert "token" not in json.dumps(lock)
    assert os.stat(server.data_dir / "owner.lock").st_mode & 0o077 == 0
