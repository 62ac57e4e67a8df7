"""ConversationStore on a real SQLite file: records, filters, keyset pages, start tasks."""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_convo.events.schema import ConversationStatus
from jupyter_convo.store.conversations import (
    MAX_PAGE_LIMIT,
    SCHEMA_VERSION,
    ConversationMetadata,
    ConversationQuery,
    ConversationStore,
    StartTask,
    StartTaskStatus,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "convo.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(db_path) as opened:
        yield opened


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def newest_first(items: list[ConversationMetadata]) -> list[str]:
    return [c.id for c in sorted(items, key=lambda c: (c.updated_at, c.id), reverse=True)]


def all_pages(fetch: Callable[[str | None], tuple[list[str], str | None]]) -> list[str]:
    """Follow next_page_id to the end; fails loudly on a page loop."""
    ids: list[str] = []
    page_id: str | None = None
    for _ in range(1_000):
        items, page_id = fetch(page_id)
        ids.extend(items)
        if page_id is None:
            return ids
    raise AssertionError("pagination did not end")


def search_all(store: ConversationStore, limit: int = 7, **filters: Any) -> list[str]:
    def fetch(page_id: str | None) -> tuple[list[str], str | None]:
        page = store.search(page_id=page_id, limit=limit, **filters)
        assert len(page.items) <= limit
        return [c.id for c in page.items], page.next_page_id

    return all_pages(fetch)


# --- database -------------------------------------------------------------------------------


def test_database_is_wal_private_and_versioned(store: ConversationStore, db_path: Path) -> None:
    assert store.journal_mode == "wal"
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    finally:
        raw.close()
    assert {"conversations", "start_tasks"} <= tables
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_every_search_filter_has_an_index(store: ConversationStore, db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    try:
        leading: set[tuple[str, ...]] = set()
        for (name,) in raw.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'conversations'"
        ):
            columns = tuple(row[2] for row in raw.execute(f"PRAGMA index_info('{name}')"))
            leading.add(columns[:2])
    finally:
        raw.close()
    firsts = {columns[0] for columns in leading}
    after_user = {columns[1] for columns in leading if columns[0] == "user_id"}
    for column in ("updated_at", "created_at", "status", "trigger", "repository", "user_id"):
        assert column in firsts, column
    for column in ("updated_at", "created_at", "status", "trigger", "repository"):
        assert column in after_user, column
    assert store.has_title_index  # SQLite here has FTS5 trigram (3.34+)


def test_reopening_keeps_rows_and_a_newer_schema_is_refused(db_path: Path) -> None:
    with ConversationStore(db_path) as first:
        first.create(ConversationMetadata(id="keep", title="kept"))
    with ConversationStore(db_path) as second:
        kept = second.get("keep")
        assert kept is not None and kept.title == "kept"
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(RuntimeError, match="newer"):
        ConversationStore(db_path)


def test_two_stores_on_one_file_see_each_other(db_path: Path) -> None:
    with ConversationStore(db_path) as writer, ConversationStore(db_path) as reader:
        writer.create(ConversationMetadata(id="shared", user_id="u"))
        assert reader.get("shared", "u") is not None
        reader.update("shared", title="from the reader")
        got = writer.get("shared")
        assert got is not None and got.title == "from the reader"


def test_concurrent_threads_create_and_read(store: ConversationStore) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(25):
                conv = store.create(ConversationMetadata(user_id=f"w{worker}", title=f"t{n}"))
                assert store.get(conv.id, f"w{worker}") is not None
                store.update(conv.id, prompt_tokens=n)
                store.search(user_id=f"w{worker}", limit=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert errors == []
    assert store.count() == 100
    assert all(store.count(user_id=f"w{i}") == 25 for i in range(4))


# --- records -------------------------------------------------------------------------------


def test_create_and_get_round_trip_every_field(store: ConversationStore) -> None:
    conv = ConversationMetadata(
        user_id="alice",
        title="Clean sales.csv",
        status=ConversationStatus.RUNNING,
        agent_state="running",
        created_at=datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
        updated_at=datetime(2024, 1, 2, 5, 4, 5, 1, tzinfo=timezone(timedelta(hours=2))),
        trigger="notebook",
        repository="org/repo",
        model="gpt-4o-mini",
        sandbox="docker",
        workspace="/home/alice/work",
        prompt_tokens=1200,
        completion_tokens=300,
        cost=0.0125,
        last_event_id=41,
        error=None,
        tags={"project": "sales", "team": "ds"},
    )
    store.create(conv)
    got = store.get(conv.id)
    assert got == conv
    assert got is not None
    assert got.updated_at == datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=timezone.utc)
    assert got.updated_at.tzinfo is not None and got.updated_at.utcoffset() == timedelta(0)
    assert len(conv.id) == 32 and conv.id.isalnum()


def test_defaults_and_naive_datetimes_are_utc(store: ConversationStore) -> None:
    conv = store.create(ConversationMetadata(created_at=datetime(2024, 3, 1, 10, 0)))
    got = store.get(conv.id)
    assert got is not None
    assert got.created_at == datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)
    assert got.status is ConversationStatus.STARTING
    assert (got.sandbox, got.trigger, got.last_event_id, got.cost) == ("process", "gui", -1, 0.0)


def test_bad_records_are_refused(store: ConversationStore) -> None:
    store.create(ConversationMetadata(id="dup"))
    with pytest.raises(ValueError, match="'dup' already exists"):
        store.create(ConversationMetadata(id="dup"))
    with pytest.raises(ValueError, match="id"):
        ConversationMetadata(id="../etc")
    with pytest.raises(ValueError, match="prompt_tokens"):
        ConversationMetadata(prompt_tokens=-1)


def test_bulk_create_is_all_or_nothing_and_keeps_titles_indexed(db_path: Path) -> None:
    with ConversationStore(db_path, title_scan_window=1) as store:  # title search via index
        store.create(ConversationMetadata(id="taken", title="first heron"))
        batch = [ConversationMetadata(id=f"b{n}", title=f"heron {n}") for n in range(5)]
        with pytest.raises(ValueError, match="already exists"):
            store.create_many([*batch, ConversationMetadata(id="taken")])
        assert store.count() == 1
        assert store.create_many(batch) == 5
        assert store.create_many([]) == 0
        store.create(ConversationMetadata(id="after", title="Last HERON"))
        assert store.count(title__contains="heron") == 7
        assert store.search(title__contains="st her", limit=5).items[0].id == "after"
        store.update("b3", title="egret")
        assert sorted(c.id for c in store.search(title__contains="egret").items) == ["b3"]
        assert store.count(title__contains="heron") == 6


def test_get_respects_ownership(store: ConversationStore) -> None:
    store.create(ConversationMetadata(id="a1", user_id="alice"))
    store.create(ConversationMetadata(id="n1", user_id=None))
    assert store.get("a1", "alice") is not None
    assert store.get("a1", "bob") is None
    assert store.get("a1") is not None  # None = any user
    assert store.get("n1", "alice") is None  # unowned rows belong to no user
    assert store.get("missing") is None


def test_get_many_keeps_order_with_none_for_missing_or_foreign(store: ConversationStore) -> None:
    for cid, user in [("a", "alice"), ("b", "bob"), ("c", "alice")]:
        store.create(ConversationMetadata(id=cid, user_id=user))
    got = store.get_many(["c", "nope", "a", "c", "b"], "alice")
    assert [g.id if g else None for g in got] == ["c", None, "a", "c", None]
    everyone = store.get_many(["b", "a"])
    assert [g.id if g else None for g in everyone] == ["b", "a"]
    assert store.get_many([]) == []
    many = [f"id{n}" for n in range(1_200)]  # more ids than one SQL statement takes
    assert store.get_many(many) == [None] * 1_200


def test_update_validates_and_bumps_updated_at(store: ConversationStore) -> None:
    store.create(ConversationMetadata(id="u", title="old", created_at=at(0), updated_at=at(0)))
    updated = store.update("u", title="New title", status="RUNNING", prompt_tokens=7)
    assert updated is not None
    assert updated.status is ConversationStatus.RUNNING
    assert updated.updated_at > at(0)
    assert store.get("u") == updated
    pinned = store.update("u", cost=1.5, updated_at=at(5))
    assert pinned is not None and pinned.updated_at == at(5) and pinned.cost == 1.5
    assert pinned.title == "New title" and pinned.prompt_tokens == 7
    with pytest.raises(ValueError, match=r"unknown field.*titel"):
        store.update("u", titel="typo")
    with pytest.raises(ValueError, match="id"):
        store.update("u", id="other")
    with pytest.raises(ValueError, match="completion_tokens"):
        store.update("u", completion_tokens=-3)
    with pytest.raises(ValueError, match="status"):
        store.update("u", status="DANCING")
    assert store.get("u") == pinned  # a refused update changes nothing
    assert store.update("missing", title="x") is None
    assert store.search(title__contains="new").items == [pinned]
    assert store.search(title__contains="old").items == []


def test_delete_removes_row_title_and_start_tasks(store: ConversationStore) -> None:
    store.create(ConversationMetadata(id="gone", title="Unique zebra title"))
    store.create_start_task(StartTask(id="t-gone", conversation_id="gone"))
    store.create_start_task(StartTask(id="t-other", conversation_id="other"))
    assert store.delete("gone") is True
    assert store.delete("gone") is False
    assert store.get("gone") is None
    assert store.count(title__contains="zebra") == 0
    assert store.get_start_task("t-gone") is None
    assert store.get_start_task("t-other") is not None


# --- search --------------------------------------------------------------------------------


@pytest.fixture
def population(store: ConversationStore) -> list[ConversationMetadata]:
    """30 conversations over two users with every filtered field varied."""
    statuses = list(ConversationStatus)
    triggers = ["gui", "notebook", "cli"]
    titles = ["Clean SALES data", "plot revenue", "Straße survey", None, "100% done_ok"]
    rows = []
    for n in range(30):
        rows.append(
            ConversationMetadata(
                id=f"c{n:02d}",
                user_id="alice" if n % 3 else "bob",
                title=titles[n % len(titles)],
                status=statuses[n % len(statuses)],
                trigger=triggers[n % len(triggers)],
                repository="org/a" if n % 4 == 0 else ("org/b" if n % 4 == 1 else None),
                created_at=at(n),
                updated_at=at(100 - (n % 10)),  # ties: three rows share each updated_at
            )
        )
    store.create_many(rows)
    return rows


FILTER_CASES: list[tuple[dict[str, Any], Callable[[ConversationMetadata], bool]]] = [
    ({}, lambda c: True),
    ({"user_id": "alice"}, lambda c: c.user_id == "alice"),
    ({"title__contains": "sales"}, lambda c: "sales" in (c.title or "").casefold()),
    ({"title__contains": "STRASSE"}, lambda c: c.title == "Straße survey"),
    ({"title__contains": "0% done_"}, lambda c: c.title == "100% done_ok"),
    ({"title__contains": "e"}, lambda c: "e" in (c.title or "").casefold()),
    ({"title__contains": ""}, lambda c: True),
    ({"created_at__gte": at(10)}, lambda c: c.created_at >= at(10)),
    ({"created_at__lt": at(10)}, lambda c: c.created_at < at(10)),
    ({"updated_at__gte": at(95)}, lambda c: c.updated_at >= at(95)),
    ({"updated_at__lt": at(95)}, lambda c: c.updated_at < at(95)),
    ({"status": ConversationStatus.ERROR}, lambda c: c.status is ConversationStatus.ERROR),
    ({"status": "RUNNING"}, lambda c: c.status is ConversationStatus.RUNNING),
    ({"trigger": "notebook"}, lambda c: c.trigger == "notebook"),
    ({"repository": "org/a"}, lambda c: c.repository == "org/a"),
    (
        {"user_id": "alice", "status": "STOPPED", "created_at__gte": at(3)},
        lambda c: c.user_id == "alice" and c.status.value == "STOPPED" and c.created_at >= at(3),
    ),
    (
        {"user_id": "bob", "title__contains": "plot", "trigger": "gui"},
        lambda c: c.user_id == "bob" and c.title == "plot revenue" and c.trigger == "gui",
    ),
    (
        {"created_at__gte": at(5), "created_at__lt": at(20), "repository": "org/b"},
        lambda c: at(5) <= c.created_at < at(20) and c.repository == "org/b",
    ),
]


@pytest.mark.parametrize(("filters", "keep"), FILTER_CASES)
def test_search_and_count_apply_every_filter(
    store: ConversationStore,
    population: list[ConversationMetadata],
    filters: dict[str, Any],
    keep: Callable[[ConversationMetadata], bool],
) -> None:
    expected = newest_first([c for c in population if keep(c)])
    assert expected  # no case is vacuous
    assert search_all(store, limit=4, **filters) == expected
    assert store.count(**filters) == len(expected)
    first = store.search(limit=MAX_PAGE_LIMIT, **filters)
    assert [c.id for c in first.items] == expected and first.next_page_id is None


def test_query_object_and_keywords_combine(
    store: ConversationStore, population: list[ConversationMetadata]
) -> None:
    query = ConversationQuery(user_id="alice", status=ConversationStatus.RUNNING)
    expected = newest_first(
        [
            c
            for c in population
            if c.user_id == "alice"
            and c.status is ConversationStatus.RUNNING
            and c.trigger == "gui"
        ]
    )
    assert [c.id for c in store.search(query, trigger="gui").items] == expected
    assert store.count(query, trigger="gui") == len(expected)
    with pytest.raises(ValueError, match=r"unknown filter.*stat\b"):
        store.search(stat="RUNNING")
    with pytest.raises(ValueError, match="status"):
        store.count(status="NOPE")


def test_pages_have_no_duplicates_or_gaps_when_updated_at_ties(store: ConversationStore) -> None:
    rows = [
        ConversationMetadata(id=f"t{n:03d}", user_id="u", updated_at=at(n // 6)) for n in range(57)
    ]
    store.create_many(rows)
    expected = newest_first(rows)
    for limit in (1, 5, 6, 10, 56, 57, 100):
        assert search_all(store, limit=limit) == expected
    page = store.search(limit=57)
    assert page.next_page_id is None


def test_page_ids_are_opaque_and_checked(
    store: ConversationStore, population: list[ConversationMetadata]
) -> None:
    page = store.search(limit=5)
    assert page.next_page_id is not None
    assert all(ch.isalnum() or ch in "-_" for ch in page.next_page_id)
    task_page_id = base64.urlsafe_b64encode(
        json.dumps({"k": "start_tasks", "s": 1, "i": "x"}).encode()
    ).decode()
    wrong_shape = base64.urlsafe_b64encode(json.dumps({"after": 3}).encode()).decode()
    not_json = base64.urlsafe_b64encode(b"\xff\xfe not json").decode()
    for bad in ["!!!", "", "abc", not_json, wrong_shape, task_page_id, page.next_page_id + "x"]:
        with pytest.raises(ValueError, match="page_id"):
            store.search(page_id=bad, limit=5)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_LIMIT + 1, 1_000])
def test_limit_out_of_range_is_refused(store: ConversationStore, limit: int) -> None:
    with pytest.raises(ValueError, match=f"limit must be between 1 and {MAX_PAGE_LIMIT}"):
        store.search(limit=limit)
    with pytest.raises(ValueError, match="limit"):
        store.search_start_tasks(limit=limit)


def test_limit_must_be_an_integer(store: ConversationStore) -> None:
    for bad in (True, 2.5, "10"):
        with pytest.raises(ValueError, match="limit must be an integer"):
            store.search(limit=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [1, 3, 50])
@pytest.mark.parametrize("use_index", [True, False])
def test_title_search_strategies_agree(db_path: Path, window: int, use_index: bool) -> None:
    """The window scan, the trigram index and the plain scan give the same pages."""
    with ConversationStore(db_path, title_scan_window=window) as store:
        store.has_title_index = use_index and store.has_title_index
        words = ["alpha", "Beta", "gamma", "DELTA", "epsilon", 'quote"d']
        rows = [
            ConversationMetadata(
                id=f"w{n:03d}",
                user_id="u" if n % 2 else "v",
                title=" ".join(words[(n * k) % len(words)] for k in (1, 2, 5)),
                updated_at=at(n % 13),
            )
            for n in range(80)
        ]
        store.create_many(rows)
        for needle in ["alpha", "ta ga", "ELTA", "a", "zz", 'e"d', "epsilon alpha gamma"]:
            for user in (None, "u"):
                expected = newest_first(
                    [
                        c
                        for c in rows
                        if needle.casefold() in (c.title or "").casefold()
                        and (user is None or c.user_id == user)
                    ]
                )
                got = search_all(store, limit=4, title__contains=needle, user_id=user)
                assert got == expected, (needle, user)
                assert store.count(title__contains=needle, user_id=user) == len(expected)


# --- start tasks ---------------------------------------------------------------------------


def test_start_task_request_never_holds_a_key(store: ConversationStore, db_path: Path) -> None:
    request = {
        "initial_message": {"text": "hello"},
        "settings": {
            "llm": {
                "model": "gpt-4o-mini",
                "api_key": "sk-live-0123456789",
                "input_cost_per_token": 1e-6,
            },
            "secrets": {"GITHUB_TOKEN": "ghp_secretvalue123"},
            "max_output_tokens": 500,
        },
        "session_api_key": "sess-abcdef123456",
    }
    task = store.create_start_task(
        StartTask(user_id="alice", conversation_id="c1", request=request)
    )
    stored = store.get_start_task(task.id)
    assert stored is not None and stored == task
    llm = stored.request["settings"]["llm"]
    assert llm["model"] == "gpt-4o-mini" and llm["input_cost_per_token"] == 1e-6
    assert llm["api_key"] == "<secret-hidden>"
    assert stored.request["settings"]["secrets"] == {"GITHUB_TOKEN": "<secret-hidden>"}
    assert stored.request["settings"]["max_output_tokens"] == 500
    assert stored.request["session_api_key"] == "<secret-hidden>"
    store.close()
    for path in db_path.parent.iterdir():
        data = path.read_bytes()
        for secret in (b"sk-live-0123456789", b"ghp_secretvalue123", b"sess-abcdef123456"):
            assert secret not in data, path


def test_start_task_lifecycle(store: ConversationStore) -> None:
    task = store.create_start_task(StartTask(user_id="alice", created_at=at(0), updated_at=at(0)))
    assert task.status is StartTaskStatus.WORKING
    for status in ("WAITING_FOR_SANDBOX", "PREPARING_WORKSPACE", "STARTING_CONVERSATION"):
        moved = store.update_start_task(task.id, status=status)
        assert moved is not None and moved.status.value == status
    failed = store.update_start_task(
        task.id, status=StartTaskStatus.ERROR, detail="docker is not running", conversation_id="c9"
    )
    assert failed is not None
    assert (failed.detail, failed.conversation_id) == ("docker is not running", "c9")
    assert failed.created_at == at(0) and failed.updated_at > at(0)
    assert store.get_start_task(task.id) == failed
    assert store.get_start_task(task.id, "bob") is None
    with pytest.raises(ValueError, match=r"unknown field.*reason"):
        store.update_start_task(task.id, reason="x")
    with pytest.raises(ValueError, match="status"):
        store.update_start_task(task.id, status="DONE")
    assert store.update_start_task("missing", status="READY") is None


def test_start_task_search_filters_pages_and_batch_get(store: ConversationStore) -> None:
    statuses = list(StartTaskStatus)
    tasks = [
        StartTask(
            id=f"s{n:02d}",
            user_id="alice" if n % 2 else "bob",
            conversation_id=f"c{n % 5}",
            status=statuses[n % len(statuses)],
            created_at=at(n // 3),  # ties on created_at
        )
        for n in range(40)
    ]
    for task in tasks:
        store.create_start_task(task)

    def expect(keep: Callable[[StartTask], bool]) -> list[str]:
        chosen = [t for t in tasks if keep(t)]
        return [t.id for t in sorted(chosen, key=lambda t: (t.created_at, t.id), reverse=True)]

    cases: list[tuple[dict[str, Any], Callable[[StartTask], bool]]] = [
        ({}, lambda t: True),
        ({"user_id": "alice"}, lambda t: t.user_id == "alice"),
        ({"conversation_id": "c3"}, lambda t: t.conversation_id == "c3"),
        ({"status": "READY"}, lambda t: t.status is StartTaskStatus.READY),
        ({"created_at__gte": at(7)}, lambda t: t.created_at >= at(7)),
        (
            {"user_id": "bob", "conversation_id": "c2", "created_at__gte": at(2)},
            lambda t: t.user_id == "bob" and t.conversation_id == "c2" and t.created_at >= at(2),
        ),
    ]
    for filters, keep in cases:
        expected = expect(keep)
        assert expected, filters

        def fetch(page_id: str | None, f: dict[str, Any] = filters) -> tuple[list[str], str | None]:
            page = store.search_start_tasks(page_id=page_id, limit=3, **f)
            return [t.id for t in page.items], page.next_page_id

        assert all_pages(fetch) == expected, filters
        assert store.count_start_tasks(**filters) == len(expected), filters

    got = store.get_start_tasks(["s03", "zz", "s02"], "alice")
    assert [t.id if t else None for t in got] == ["s03", None, None]
    conversation_page_id = store.search(limit=1).next_page_id  # empty table: no next page
    assert conversation_page_id is None
    store.create_many([ConversationMetadata(id=f"p{n}") for n in range(3)])
    conversation_page_id = store.search(limit=1).next_page_id
    assert conversation_page_id is not None
    with pytest.raises(ValueError, match="page_id"):
        store.search_start_tasks(page_id=conversation_page_id)
    with pytest.raises(ValueError, match="unknown filter"):
        store.count_start_tasks(title__contains="x")


def test_closed_store_says_so(db_path: Path) -> None:
    store = ConversationStore(db_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        store.get("x")
