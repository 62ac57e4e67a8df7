"""What the server keeps of relayed events: bounded in bytes, and nothing once all stops.

Python cells display 2 MB images while two clients watch. The check is structural, not a
figure: the relay's byte count (frames and queued events) stays under its bounds while the
images stream, and once the conversation is stopped and unwatched the server process
holds no relayed event at all (``gc``). Figures (RSS before and after) are printed by
``bench/bench_relay_memory.py``.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from server_harness import WAIT, Api
from test_routes import services_of

from jupyter_convo.events.schema import PythonOutputEvent
from jupyter_convo.manager.relay import DEFAULT_MAILBOX_BYTES, FRAME_CACHE_BYTES
from jupyter_convo.testing import ScriptedLLM, reply, tool_call

IMAGE_CELL = """
import os
from IPython.display import Image, display
display(Image(data=b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(2 * 1024 * 1024), format="png"))
"""
CELLS = 4


async def raw_frames(jp_ws_fetch: Any, cid: str) -> Any:
    """A socket read as raw text: this test process must not hold parsed events itself."""
    return await jp_ws_fetch(
        "api", "convo", "conversations", cid, "events", "ws", params={"after_id": -1}
    )


async def read_until(connection: Any, text: str, seen: list[int]) -> None:
    """Read frames (keeping their sizes only) until one contains ``text``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        frame = await asyncio.wait_for(connection.read_message(), deadline - loop.time())
        assert frame is not None, "the socket closed early"
        seen.append(len(frame))
        if text in frame:
            return


async def test_relayed_images_are_bounded_and_freed_after_stop(
    alice: Api, jp_serverapp: Any, jp_ws_fetch: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [tool_call("python", {"code": IMAGE_CELL}) for _ in range(CELLS)] + [reply("images shown")],
        match="show images",
    )
    manager = services_of(jp_serverapp).manager
    cid = (await alice.start("show images"))["conversation_id"]
    watchers = [await raw_frames(jp_ws_fetch, cid) for _ in range(2)]
    bound = FRAME_CACHE_BYTES + len(watchers) * DEFAULT_MAILBOX_BYTES
    held: list[int] = []
    sizes: list[int] = []
    for _ in range(CELLS):
        await read_until(watchers[0], '"kind":"python_output"', sizes)
        held.append(manager.cached_bytes())
        assert held[-1] <= bound, held
    await read_until(watchers[0], "images shown", sizes)
    await read_until(watchers[1], "images shown", [])
    assert sum(size > 2 * 1024 * 1024 for size in sizes) == CELLS, "the images were relayed"

    await alice.post(f"conversations/{cid}/stop")
    for watcher in watchers:
        watcher.close()
    await until(lambda: manager.cached_bytes() == 0 and not manager.watched())
    gc.collect()
    kept = [o for o in gc.get_objects() if is_image_event(o)]
    assert kept == [], f"{len(kept)} relayed image events are still held by the server"


def is_image_event(value: object) -> bool:
    """One of this test's events: a python output displaying a 2 MB image (other tests of
    the session may keep small events of their own)."""
    return isinstance(value, PythonOutputEvent) and any(
        isinstance(data, str) and len(data) > 1024 * 1024
        for bundle in value.display_data
        for data in bundle.values()
    )


async def until(condition: Any, timeout: float = WAIT) -> None:
    """Until ``condition()`` holds (the server lets go of a socket a loop turn later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the server still holds the conversation's relay"
        await asyncio.sleep(0.05)
