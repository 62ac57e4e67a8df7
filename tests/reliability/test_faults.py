"""Faults: SIGKILL the runtime, the kernel and the server at seeded random points.

After each kill, every acknowledged event (one a subscriber received: the runtime writes
an event to its log before it broadcasts it) is in the log unchanged, the conversation's
status says what happened, and the conversation restarts and goes on. The server is a
real ``jupyter server`` subprocess, killed with SIGKILL and started again on its data dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from live_server import ALICE, LiveServer
from reliability_helpers import Event, Subscriber, astart, state_is, stored_events

from jupyter_convo.testing import ScriptedLLM, call, reply, tool_call, tool_calls

pytestmark = pytest.mark.timeout(300)  # bounded waits inside; this is the backstop
SEEDS = [11, 29]
WAIT = 120.0


def runtime_pid(server: LiveServer, cid: str) -> int:
    record = server.data_dir / "conversations" / cid / "runtime.json"
    return int(json.loads(record.read_text())["pid"])


def thinking(name: str, answers: int, delay: float) -> list[Any]:
    """``answers`` LLM turns of 3 think calls each (each turn after ``delay``), then done."""
    turns: list[Any] = [
        tool_calls(
            [call("think", {"thought": f"{name} {step}.{n}"}) for n in range(3)], delay=delay
        )
        for step in range(answers)
    ]
    return [*turns, reply(f"{name} done"), reply(f"{name} again")]


def assert_acknowledged_in_log(seen: list[Event], log: list[Event]) -> None:
    by_id = {event["id"]: event for event in log}
    for event in seen:
        assert by_id.get(event["id"]) == event, f"acknowledged event {event['id']} lost or changed"
    assert [event["id"] for event in log] == list(range(len(log))), "the log has gaps"


def finished_turn(name: str) -> Any:
    return lambda e: e["kind"] == "message" and e["source"] == "agent" and e["text"] == name


@pytest.mark.parametrize("seed", SEEDS)
async def test_runtime_killed_mid_run_loses_nothing_and_restarts(
    server: LiveServer, llm: ScriptedLLM, seed: int
) -> None:
    rng = random.Random(seed)
    name = f"runtime-kill {seed} {server.port}"
    llm.add_script(thinking(name, answers=25, delay=0.02), match=name)
    kill_after = rng.randrange(8, 70)
    async with server.async_client(ALICE) as alice:
        cid = await astart(alice, name, max_iterations=100)
        watcher = await Subscriber.connect(server, cid)
        await watcher.until(lambda e: e["id"] >= kill_after)
        os.kill(runtime_pid(server, cid), signal.SIGKILL)
        died = await watcher.until(lambda e: e["kind"] == "error" and e["code"] == "RUNTIME_DIED")
        acknowledged = [e for e in watcher.logged() if e["id"] < died["id"]]
        assert_acknowledged_in_log(acknowledged, stored_events(server.data_dir, cid))
        meta = (await alice.get(f"conversations/{cid}")).json()
        assert meta["status"] == "ERROR" and "RUNTIME_DIED" in (meta["error"] or "")

        # A restart continues from the log and waits for the user, who says go on.
        restarted = await alice.post(f"conversations/{cid}/start", json={})
        assert restarted.status_code == 200, restarted.text
        assert (await alice.get(f"conversations/{cid}")).json()["status"] == "RUNNING"
        await watcher.until(state_is("awaiting_user_input"))
        await alice.post(f"conversations/{cid}/messages", json={"text": "go on"})
        await watcher.until(finished_turn(f"{name} done"), timeout=WAIT)
        await watcher.until(state_is("awaiting_user_input"))
        await alice.post(f"conversations/{cid}/messages", json={"text": "once more"})
        await watcher.until(finished_turn(f"{name} again"))
        log = stored_events(server.data_dir, cid)
        assert_acknowledged_in_log(watcher.logged(), log)
        assert [e["id"] for e in watcher.logged()] == list(range(len(watcher.logged())))
        await alice.post(f"conversations/{cid}/stop")
    watcher.close()


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            for child in map(int, (task / "children").read_text().split()):
                found.append(child)
                stack.append(child)
    return found


def kernel_of(runtime: int) -> int:
    """The kernel process the runtime started (inside its jail: not bwrap itself)."""
    for pid in descendants(runtime):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"ipykernel" in b" ".join(argv) and not argv[0].endswith(b"bwrap"):
            return pid
    raise AssertionError(f"runtime {runtime} has no kernel child")


async def wait_for_reader(fifo: Path) -> None:
    """Until a writer opens ``fifo``; if none does in time, fail without leaving the
    reading thread blocked in open() (it would hang the test session at its end)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(fifo.read_text), WAIT)
    except asyncio.TimeoutError:
        with fifo.open("w"):  # releases the blocked reader
            pass
        raise AssertionError(f"nothing opened {fifo} within {WAIT} s") from None


@pytest.mark.parametrize("seed", SEEDS)
async def test_kernel_killed_mid_cell_is_reported_and_the_next_cell_works(
    server: LiveServer, llm: ScriptedLLM, seed: int
) -> None:
    """The cell to kill (chosen by the seed) opens a FIFO the test reads: once the read
    returns, the cell is running; it then blocks, and the kernel is killed. The FIFO is in
    the workspace (the kernel's folder, jailed or not), made before the agent's first step
    is let go."""
    rng = random.Random(seed)
    doomed = rng.randrange(3)
    blocking = "open('cell-running', 'w').write('x')\nimport time\ntime.sleep(300)"
    cells = [blocking if n == doomed else f"value = {n} * 7\nprint(value)" for n in range(3)]
    name = f"kernel-kill {seed} {server.port}"
    gate = f"{name} fifo ready"
    steps = [
        tool_call("python", {"code": code, "timeout": 600}, gate=gate if n == 0 else None)
        for n, code in enumerate(cells)
    ]
    llm.add_script(
        [*steps, tool_call("python", {"code": "print(6 * 7)"}), reply(f"{name} done")],
        match=name,
    )
    async with server.async_client(ALICE) as alice:
        cid = await astart(alice, name, max_iterations=20)
        fifo = server.data_dir / "conversations" / cid / "workspace" / "cell-running"
        os.mkfifo(fifo)
        llm.open_gate(gate)
        watcher = await Subscriber.connect(server, cid)
        await wait_for_reader(fifo)  # the cell runs
        os.kill(kernel_of(runtime_pid(server, cid)), signal.SIGKILL)
        await watcher.until(finished_turn(f"{name} done"), timeout=WAIT)
        outputs = [e for e in watcher.logged() if e["kind"] == "python_output"]
        assert len(outputs) == 4
        assert outputs[doomed]["error"] is not None, outputs[doomed]
        assert outputs[-1]["stdout"].strip() == "42", outputs[-1]
        meta = (await alice.get(f"conversations/{cid}")).json()
        assert meta["status"] == "RUNNING" and meta["agent_state"] != "error"
        assert_acknowledged_in_log(watcher.logged(), stored_events(server.data_dir, cid))
        await alice.post(f"conversations/{cid}/stop")
    watcher.close()


@pytest.mark.parametrize("seed", SEEDS)
async def test_server_killed_mid_run_finds_its_runtime_again(
    server: LiveServer, llm: ScriptedLLM, seed: int
) -> None:
    rng = random.Random(seed)
    name = f"server-kill {seed} {server.port}"
    llm.add_script(thinking(name, answers=30, delay=0.05), match=name)
    kill_after = rng.randrange(5, 80)
    async with server.async_client(ALICE) as alice:
        cid = await astart(alice, name, max_iterations=100)
    watcher = await Subscriber.connect(server, cid)
    await watcher.until(lambda e: e["id"] >= kill_after)
    runtime = runtime_pid(server, cid)
    server.kill()
    while await watcher.next() is not None:  # frames already sent, then the close
        pass
    acknowledged = watcher.logged()
    assert_acknowledged_in_log(acknowledged, stored_events(server.data_dir, cid))

    await asyncio.to_thread(server.start)
    assert runtime_pid(server, cid) == runtime, "the same runtime serves it again"
    resumed = await Subscriber.connect(server, cid, after_id=acknowledged[-1]["id"])
    await resumed.until(finished_turn(f"{name} done"), timeout=WAIT)
    ids = [e["id"] for e in acknowledged] + [e["id"] for e in resumed.logged()]
    assert ids == list(range(len(ids))), "no event lost or repeated across the server kill"
    async with server.async_client(ALICE) as alice:
        meta = (await alice.get(f"conversations/{cid}")).json()
        assert meta["status"] == "RUNNING", meta
        await alice.post(f"conversations/{cid}/messages", json={"text": "go on"})
        await resumed.until(finished_turn(f"{name} again"))
        assert_acknowledged_in_log(
            acknowledged + resumed.logged(), stored_events(server.data_dir, cid)
        )
        await alice.post(f"conversations/{cid}/stop")
    resumed.close()
