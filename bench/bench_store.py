"""How fast the conversation list answers with 100,000 conversations in ``convo.db``.

Run: ``python bench/bench_store.py [--rows 100000] [--repeat 50]``. Prints a Markdown table
of median and p95 per operation; the first page (limit 20 or 100) should take <= 10 ms.
Setup uses the bulk insert (one transaction); the timed calls are the server's calls.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from _stats import Figure, markdown_table, measure

from jupyter_convo.events.schema import ConversationStatus
from jupyter_convo.store.conversations import ConversationMetadata, ConversationStore, utcnow

PAGE_TARGET = 0.010  # seconds, first page at 100,000 conversations
WORDS = [
    *("clean", "sales", "csv", "plot", "revenue", "by", "month", "analyze", "survey", "data"),
    *("merge", "join", "train", "model", "fit", "regression", "chart", "notebook", "debug"),
    *("error", "fix", "forecast", "churn", "cohort", "dashboard", "export"),
]
RARE_WORD = "kestrel"  # in about 1 title of 10,000
STATUS_WEIGHTS = {
    ConversationStatus.STOPPED: 80,
    ConversationStatus.RUNNING: 2,
    ConversationStatus.ERROR: 8,
    ConversationStatus.ARCHIVED: 9,
    ConversationStatus.STARTING: 1,
}
USERS = ("alice", "bob", "carol", "dan")


def conversations(rows: int, rng: random.Random) -> list[ConversationMetadata]:
    now = utcnow()
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    items = []
    for n in range(rows):
        words = rng.choices(WORDS, k=rng.randint(3, 7))
        if n % 10_000 == 7:
            words.insert(1, RARE_WORD.capitalize())
        created = now - timedelta(seconds=rng.randrange(3 * 365 * 86_400))
        items.append(
            ConversationMetadata(
                user_id=rng.choice(USERS),
                title=" ".join(words).capitalize(),
                status=rng.choices(statuses, weights)[0],
                trigger=rng.choice(("gui", "notebook", "cli")),
                created_at=created,
                updated_at=created + timedelta(seconds=rng.randrange(86_400)),
                model="gpt-4o-mini",
                prompt_tokens=rng.randrange(100_000),
                completion_tokens=rng.randrange(10_000),
            )
        )
    return items


def figures(store: ConversationStore, repeat: int) -> list[Figure]:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("no filter", {}),
        ("one user", {"user_id": "alice"}),
        ("title__contains common word", {"title__contains": "Sales"}),
        ("title__contains rare word", {"title__contains": RARE_WORD}),
        ("title__contains no match", {"title__contains": "zzyzx"}),
        ("one user + title__contains", {"user_id": "alice", "title__contains": "forecast"}),
        ("status=RUNNING (2%)", {"status": "RUNNING"}),
        ("one user + status=ERROR", {"user_id": "alice", "status": "ERROR"}),
    ]
    found: list[Figure] = []
    for limit in (20, 100):
        for name, filters in cases:
            timings = measure(partial(store.search, limit=limit, **filters), repeat=repeat)
            found.append(Figure(f"first page, limit {limit}, {name}", timings, "page", PAGE_TARGET))
    page = store.search(limit=100)
    deep = page.next_page_id
    for _ in range(200):  # the 200th page: keyset pages cost the same at any depth
        deep = store.search(limit=100, page_id=deep).next_page_id
    found.append(
        Figure(
            "page 202, limit 100, no filter",
            measure(lambda: store.search(limit=100, page_id=deep), repeat=repeat),
            "page",
            PAGE_TARGET,
        )
    )
    for name, filters in cases[:2] + cases[2:3] + cases[6:7]:
        timings = measure(partial(store.count, **filters), repeat=repeat)
        found.append(Figure(f"count, {name}", timings, "count"))
    return found


def write_figures(store: ConversationStore, rng: random.Random, repeat: int) -> list[Figure]:
    ids = [c.id for c in store.search(limit=100).items]

    def create() -> None:
        store.create(ConversationMetadata(user_id="alice", title=" ".join(rng.choices(WORDS, k=5))))

    def update() -> None:
        store.update(rng.choice(ids), last_event_id=rng.randrange(1_000), cost=rng.random())

    return [
        Figure("create one conversation", measure(create, repeat=repeat), "call"),
        Figure("update one conversation", measure(update, repeat=repeat), "call"),
        Figure("get one conversation", measure(lambda: store.get(ids[0], "alice"), repeat=repeat)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"# ConversationStore with {args.rows:,} conversations\n")
    print(f"- Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = ConversationStore(Path(tmp) / "convo.db")
        print(f"- title index: {'FTS5 trigram' if store.has_title_index else 'none (scan)'}")
        start = time.perf_counter()
        items = conversations(args.rows, rng)
        print(f"- build {len(items):,} models: {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        store.create_many(items)
        print(f"- bulk insert (one transaction): {time.perf_counter() - start:.1f} s")
        items.clear()
        print()
        try:
            print(markdown_table(figures(store, args.repeat) + write_figures(store, rng, 200)))
        finally:
            store.close()


if __name__ == "__main__":
    main()
