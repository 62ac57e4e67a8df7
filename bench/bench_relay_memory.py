"""The Jupyter server's memory while it relays big events, and after everything stopped.

A real Jupyter server (subprocess, with the extension) runs conversations whose python cells
display 2 MB images, each watched by two WebSocket clients; then every conversation is
stopped and every client leaves. Prints the server process's RSS (``/proc/<pid>/status``)
before, after each conversation, and at the end. Before the relay's caches were bounded in
bytes and dropped with their conversation, RSS went 158 -> 785 MB over three such
conversations and stayed there when all was stopped.

    python bench/bench_relay_memory.py [--quick] [--conversations 3] [--cells 4]

RSS also holds what the allocator keeps for reuse, so "after" does not fall back to
"before"; what matters is that it stops growing with the relayed bytes. The structural
check (byte counts bounded, zero after stop) is tests/server/test_memory.py. Printed,
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import httpx
from _server import BenchServer, bench_server
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from jupyter_convo.testing import reply, tool_call

IMAGE_CELL = """
import os
from IPython.display import Image, display
display(Image(data=b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(2 * 1024 * 1024), format="png"))
"""
WAIT = 300.0
MIB = 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


async def watch(server: BenchServer, cid: str) -> WebSocketClientConnection:
    url = f"{server.ws_api}conversations/{cid}/events/ws?{urlencode({'after_id': -1})}"
    request = HTTPRequest(url, headers=server.headers, request_timeout=WAIT)
    return await websocket_connect(request, max_message_size=64 * MIB)


async def drain_until(connection: WebSocketClientConnection, text: str) -> int:
    """Read frames until one holds ``text``; the bytes read."""
    total = 0
    while True:
        frame = await asyncio.wait_for(connection.read_message(), WAIT)
        if frame is None:
            raise RuntimeError("the socket closed before the end of the run")
        total += len(frame)
        if text in frame:
            return total


async def run(conversations: int, cells: int) -> None:
    config = {"max_concurrent_conversations": conversations + 1}
    with (
        tempfile.TemporaryDirectory(prefix="bench-relay-memory-") as tmp,
        bench_server(Path(tmp), config) as server,
    ):
        pid = server.proc.pid
        server.llm.add_script(
            [tool_call("python", {"code": IMAGE_CELL}) for _ in range(cells)]
            + [reply("images shown")],
            match="show images",
        )
        async with httpx.AsyncClient(
            base_url=server.api, headers=server.headers, timeout=WAIT
        ) as client:
            await client.get("conversations/search")  # the manager is up
            print(f"server pid {pid}: RSS before       {rss_mb(pid):7.1f} MB")
            ids, sockets = [], []
            for n in range(conversations):
                started = await client.post(
                    "conversations/stream-start", json={"initial_message": f"show images {n}"}
                )
                cid = started.json()[-1]["conversation_id"]
                pair = [await watch(server, cid) for _ in range(2)]
                relayed = 0
                for connection in pair:
                    relayed += await drain_until(connection, "images shown")
                ids.append(cid)
                sockets += pair
                print(
                    f"after conversation {n + 1} ({relayed / MIB:5.1f} MB relayed): "
                    f"RSS {rss_mb(pid):7.1f} MB"
                )
            for cid in ids:
                await client.post(f"conversations/{cid}/stop")
            for connection in sockets:
                connection.close()
            await client.get("conversations/search")  # a loop turn for the closes
            await asyncio.sleep(1.0)  # a figure, not a test: let the closes land
            print(f"all stopped, sockets closed: RSS {rss_mb(pid):7.1f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 conversation of 2 cells")
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--cells", type=int, default=4, help="2 MB images per conversation")
    args = parser.parse_args(argv)
    if args.quick:
        args.conversations, args.cells = 1, 2
    asyncio.run(run(args.conversations, args.cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
