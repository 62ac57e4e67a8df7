"""Event delivery from the runtime through the server to WebSocket subscribers.

A real Jupyter server (subprocess, with the extension) runs a conversation against the
scripted LLM whose every answer is a burst of ``think`` calls: cheap events, so the agent
makes them as fast as it can. Subscribers connect to ``events/ws`` first; the LLM holds its
first answer until all are connected (a gate), then the burst flows.

- latency: receive time at a subscriber minus the event's timestamp (set in the runtime
  when the event is made, same clock): runtime -> log -> runtime WS -> server relay ->
  server WS -> client, per event and subscriber; p50 and p95.
- live throughput: events delivered to all subscribers per second of the burst, and the
  rate the runtime made them (the relay cannot deliver faster than the agent produces).
- catch-up throughput: the same subscribers reconnecting from ``after_id=-1`` afterwards;
  the server serves the stored events from the log, as fast as it can.

    python bench/bench_relay.py [--quick] [--subscribers 1 50] [--steps 40 --calls 100]

Each case runs ``--repeat`` times: latencies are pooled over the runs, rates are the median
run's. Targets (issue 15): 1 subscriber, burst: delivered >= what the runtime makes and
>= 20,000 events/s; 50 subscribers, burst: p50 <= 50 ms; paced: p50 <= 1 / 3 ms with 1 / 50
subscribers. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
from _server import BenchServer, bench_server
from _stats import Figure, format_duration, markdown_table, percentile
from _summary import record
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_convo.testing import ScriptedResponse, call, reply, tool_calls

BURST_LATENCY_TARGET = {50: 50e-3}  # p50, by subscribers
PACED_LATENCY_TARGET = {1: 1e-3, 50: 3e-3}
RATE_TARGET = 20_000.0
END_STATES = {"awaiting_user_input", "finished", "error", "stopped"}
WAIT = 300.0
PACE = 0.02  # seconds between LLM answers in the paced runs


@dataclass
class Received:
    """What one subscriber saw."""

    ids: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    first: float = 0.0
    last: float = 0.0


def script(name: str, steps: int, calls: int, delay: float = 0.0) -> list[ScriptedResponse]:
    """``steps`` answers of ``calls`` distinct think calls each, then a reply; the first
    answer waits for the gate ``name``."""
    answers: list[ScriptedResponse] = []
    for step in range(steps):
        thinks = [
            call("think", {"thought": f"{name} step {step} thought {n}"}) for n in range(calls)
        ]
        answers.append(tool_calls(thinks, gate=name if step == 0 else None, delay=delay))
    answers.append(reply("burst done"))
    return answers


async def subscribe(
    server: BenchServer, cid: str, after_id: int, received: Received, connected: asyncio.Event
) -> None:
    url = f"{server.ws_api}conversations/{cid}/events/ws?{urlencode({'after_id': after_id})}"
    connection = await websocket_connect(
        HTTPRequest(url, headers=server.headers), max_message_size=64 * 1024 * 1024
    )
    connected.set()
    try:
        while (frame := await connection.read_message()) is not None:
            now = time.time()
            event = json.loads(frame)
            if event["id"] < 0:
                continue  # a server notice (title), not part of the log
            made = datetime.fromisoformat(event["timestamp"]).timestamp()
            if not received.ids:
                received.first = now
            received.ids.append(event["id"])
            received.latencies.append(now - made)
            received.last = now
            if event["kind"] == "agent_state" and event["state"] in END_STATES:
                return
    finally:
        connection.close()


async def catch_up(server: BenchServer, cid: str, last_id: int, count: int) -> float:
    """Seconds until ``count`` subscribers from ``after_id=-1`` all got ``last_id``."""

    async def one() -> None:
        url = f"{server.ws_api}conversations/{cid}/events/ws?after_id=-1"
        connection = await websocket_connect(
            HTTPRequest(url, headers=server.headers), max_message_size=64 * 1024 * 1024
        )
        try:
            while (frame := await connection.read_message()) is not None:
                if json.loads(frame)["id"] >= last_id:
                    return
            raise RuntimeError("the stream ended before the last event")
        finally:
            connection.close()

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), WAIT)
    return time.perf_counter() - start


async def run_case(
    server: BenchServer,
    http: httpx.AsyncClient,
    subscribers: int,
    steps: int,
    calls: int,
    delay: float = 0.0,
) -> dict[str, object]:
    name = f"relay-bench-{subscribers}-{time.monotonic_ns()}"
    server.llm.add_script(script(name, steps, calls, delay), match=name)
    updates = (
        await http.post(
            "conversations/stream-start",
            json={"initial_message": name, "max_iterations": steps + 10},
        )
    ).json()
    if updates[-1]["status"] != "READY":
        raise RuntimeError(f"start failed: {updates}")
    cid = updates[-1]["conversation_id"]
    page = (
        await http.get(f"conversations/{cid}/events/search", params={"reverse": "true", "limit": 1})
    ).json()
    after_id = page["items"][0]["id"] if page["items"] else -1
    received = [Received() for _ in range(subscribers)]
    connected = [asyncio.Event() for _ in range(subscribers)]
    tasks = [
        asyncio.create_task(subscribe(server, cid, after_id, r, c))
        for r, c in zip(received, connected, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), WAIT)
    gate_opened = time.time()
    server.llm.open_gate(name)
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    events = len(received[0].ids)
    for r in received:
        if r.ids != received[0].ids or r.ids != sorted(set(r.ids)):
            raise RuntimeError("a subscriber saw a different, duplicated or reordered stream")
    latencies = [value for r in received for value in r.latencies]
    done = max(r.last for r in received)
    stored = (
        await http.get(
            f"conversations/{cid}/events/search", params={"after_id": after_id, "limit": 1000}
        )
    ).json()
    made = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in stored["items"]]
    produce_seconds = max(made[-1] - made[0], 1e-9) if len(made) > 1 else float("nan")
    catch_up_seconds = await catch_up(server, cid, received[0].ids[-1], subscribers)
    total_stored = received[0].ids[-1] + 1
    await http.post(f"conversations/{cid}/stop")
    return {
        "subscribers": subscribers,
        "events": events,
        "latencies": latencies,
        "live_rate": events * subscribers / max(done - gate_opened, 1e-9),
        "produce_rate": (len(made) - 1) / produce_seconds if len(made) > 1 else float("nan"),
        "catch_up_rate": total_stored * subscribers / catch_up_seconds,
        "catch_up_events": total_stored,
    }


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        config = {"max_concurrent_conversations": 10}
        with bench_server(Path(tmp), config, stream_chunk_chars=100_000) as server:
            async with httpx.AsyncClient(
                base_url=server.api, headers=server.headers, timeout=WAIT
            ) as http:
                # One small uncounted run: imports, caches, first runtime.
                await run_case(server, http, 1, 2, 5)
                runs = [
                    [
                        await run_case(server, http, count, args.steps, args.calls)
                        for count in args.subscribers
                    ]
                    for _ in range(args.repeat)
                ]
                # Paced: one think per LLM answer every PACE s, far below saturation.
                paced_runs = [
                    [
                        await run_case(server, http, count, args.paced_steps, 1, PACE)
                        for count in args.subscribers
                    ]
                    for _ in range(args.repeat)
                ]
    results = [merge([run[i] for run in runs]) for i in range(len(args.subscribers))]
    paced = [merge([run[i] for run in paced_runs]) for i in range(len(args.subscribers))]
    for result in results:
        n = result["subscribers"]
        record(f"relay_burst_latency_{n}", result["latencies"], "s")  # type: ignore[arg-type]
        record(f"relay_burst_rate_{n}", result["live_rates"], "events/s")  # type: ignore[arg-type]
        record(f"relay_runtime_rate_{n}", result["produce_rates"], "events/s")  # type: ignore[arg-type]
    for result in paced:
        n = result["subscribers"]
        record(f"relay_paced_latency_{n}", result["latencies"], "s")  # type: ignore[arg-type]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"## Relay: runtime -> server -> WebSocket ({os.cpu_count()} CPUs, load {load}; "
        f"{args.steps} LLM answers x {args.calls} think calls per conversation)\n"
    )
    figures: list[Figure] = []
    for result in results:
        n = result["subscribers"]
        figures.append(
            Figure(
                f"delivery latency, {n} subscriber(s), {result['events']:,} events each",
                result["latencies"],  # type: ignore[arg-type]
                "event",
                BURST_LATENCY_TARGET.get(n),  # type: ignore[call-overload]
            )
        )
    for result in paced:
        figures.append(
            Figure(
                f"paced delivery latency (an event pair every {PACE * 1000:.0f} ms), "
                f"{result['subscribers']} subscriber(s)",
                result["latencies"],  # type: ignore[arg-type]
                "event",
                PACED_LATENCY_TARGET.get(result["subscribers"]),  # type: ignore[call-overload]
            )
        )
    print(markdown_table(figures))
    print(
        "\n| subscribers | live delivered events/s (all subscribers) | runtime made events/s "
        "| catch-up from the log, events/s (all subscribers) | target |"
    )
    print("|---:|---:|---:|---:|---:|")
    for result in results:
        print(
            f"| {result['subscribers']} | {result['live_rate']:,.0f} "
            f"| {result['produce_rate']:,.0f} | {result['catch_up_rate']:,.0f} "
            f"({result['catch_up_events']:,} events each) | >= {RATE_TARGET:,.0f} |"
        )
    print(
        "\nlatency p50 over every event and subscriber: "
        + ", ".join(
            f"{r['subscribers']} sub: {format_duration(statistics.median(r['latencies']))} "  # type: ignore[arg-type]
            f"(p95 {format_duration(percentile(r['latencies'], 95))})"  # type: ignore[arg-type]
            for r in results
        )
    )


def merge(cases: list[dict[str, object]]) -> dict[str, object]:
    """Repeated runs of one case: latencies pooled, rates per run (their median shown)."""
    merged = dict(cases[-1])
    merged["latencies"] = [value for case in cases for value in case["latencies"]]  # type: ignore[attr-defined]
    for name in ("live_rate", "produce_rate", "catch_up_rate"):
        merged[name + "s"] = [case[name] for case in cases]
        merged[name] = statistics.median(merged[name + "s"])  # type: ignore[arg-type]
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small burst (for CI and smoke runs)"
    )
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--steps", type=int, default=40, help="LLM answers per burst")
    parser.add_argument("--calls", type=int, default=100, help="think calls per answer")
    parser.add_argument("--paced-steps", type=int, default=100, help="answers of a paced run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.calls, args.paced_steps, args.repeat = 10, 50, 30, 1
    started = time.perf_counter()
    asyncio.run(main_async(args))
    print(f"\nTotal bench time: {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
