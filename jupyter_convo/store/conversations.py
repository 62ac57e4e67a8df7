"""Conversation metadata and start tasks in one SQLite database (``convo.db``).

Metadata is a cache of what each conversation's event log says (title, status, tokens,
cost); it lives in SQLite so listing, filtering and counting stay fast with many
conversations. Lists are ordered newest first and paged by keyset (``(updated_at, id) <
(?, ?)``) behind an opaque ``page_id``, so a page costs the same at any depth. Every search
filter has an index; ``title__contains`` uses an FTS5 trigram index when SQLite has one.

All methods are synchronous: one connection per store, guarded by a lock, in WAL mode so
readers in other processes (the CLI) never block the server.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from .models import (
    ConversationMetadata,
    ConversationPage,
    ConversationQuery,
    StartTask,
    StartTaskPage,
    StartTaskQuery,
    StartTaskStatus,
    fold_title,
    from_micros,
    new_id,
    sanitize_request,
    to_micros,
    utcnow,
)
from .paging import (
    DEFAULT_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    Where,
    build_query,
    check_limit,
    decode_page_id,
    encode_page_id,
)
from .schema import (
    SCHEMA_VERSION,
    TITLE_BULK_FILL_SQL,
    TITLE_INDEX,
    TITLE_INSERT_TRIGGER,
    TITLE_INSERT_TRIGGER_SQL,
    ensure_title_index,
    migrate,
)

__all__ = [
    "DEFAULT_PAGE_LIMIT",
    "MAX_PAGE_LIMIT",
    "SCHEMA_VERSION",
    "ConversationMetadata",
    "ConversationPage",
    "ConversationQuery",
    "ConversationStore",
    "StartTask",
    "StartTaskPage",
    "StartTaskQuery",
    "StartTaskStatus",
    "new_id",
    "sanitize_request",
    "utcnow",
]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 10.0
# How many of the newest filtered rows a title search scans before asking the FTS index:
# common words fill a page within this window, rare ones are found faster by the index.
DEFAULT_TITLE_SCAN_WINDOW = 4_000
# The FTS5 trigram tokenizer cannot match needles shorter than a trigram.
_MIN_FTS_NEEDLE = 3
_IDS_PER_QUERY = 500


# --- row mapping -------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class _Table(Generic[M]):
    """How one model maps onto one table."""

    name: str
    model: type[M]
    sort_column: str  # newest first by (sort_column, id)
    page_kind: str  # stamped in page ids, so one list's page id is refused by another
    to_row: Callable[[M], dict[str, Any]]
    from_row: Callable[[sqlite3.Row], M]
    # Columns computed from a field, rewritten whenever the field changes.
    derived: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.model.model_fields)


def _conversation_to_row(meta: ConversationMetadata) -> dict[str, Any]:
    return {
        "id": meta.id,
        "user_id": meta.user_id,
        "title": meta.title,
        "title_folded": fold_title(meta.title),
        "status": meta.status.value,
        "agent_state": meta.agent_state,
        "created_at": to_micros(meta.created_at),
        "updated_at": to_micros(meta.updated_at),
        "trigger": meta.trigger,
        "repository": meta.repository,
        "model": meta.model,
        "sandbox": meta.sandbox,
        "workspace": meta.workspace,
        "prompt_tokens": meta.prompt_tokens,
        "completion_tokens": meta.completion_tokens,
        "cost": meta.cost,
        "last_event_id": meta.last_event_id,
        "error": meta.error,
        "tags": json.dumps(meta.tags, sort_keys=True),
    }


def _conversation_from_row(row: sqlite3.Row) -> ConversationMetadata:
    data = {key: row[key] for key in ConversationMetadata.model_fields}
    data["created_at"] = from_micros(row["created_at"])
    data["updated_at"] = from_micros(row["updated_at"])
    data["tags"] = json.loads(row["tags"])
    return ConversationMetadata.model_validate(data)


def _task_to_row(task: StartTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "conversation_id": task.conversation_id,
        "user_id": task.user_id,
        "status": task.status.value,
        "detail": task.detail,
        "created_at": to_micros(task.created_at),
        "updated_at": to_micros(task.updated_at),
        "request": json.dumps(task.request, sort_keys=True, default=str),
    }


def _task_from_row(row: sqlite3.Row) -> StartTask:
    data = {key: row[key] for key in StartTask.model_fields}
    data["created_at"] = from_micros(row["created_at"])
    data["updated_at"] = from_micros(row["updated_at"])
    data["request"] = json.loads(row["request"])
    return StartTask.model_validate(data)


_CONVERSATIONS: _Table[ConversationMetadata] = _Table(
    name="conversations",
    model=ConversationMetadata,
    sort_column="updated_at",
    page_kind="conversations",
    to_row=_conversation_to_row,
    from_row=_conversation_from_row,
    derived={"title": ("title_folded",)},
)
_START_TASKS: _Table[StartTask] = _Table(
    name="start_tasks",
    model=StartTask,
    sort_column="created_at",
    page_kind="start_tasks",
    to_row=_task_to_row,
    from_row=_task_from_row,
)


def _quoted(column: str) -> str:
    return f'"{column}"'


def _conversation_where(query: ConversationQuery) -> Where:
    """Every filter but the title (which needs its own strategy)."""
    where = Where()
    if query.user_id is not None:
        where.add("user_id = ?", query.user_id)
    if query.status is not None:
        where.add("status = ?", query.status.value)
    if query.trigger is not None:
        where.add('"trigger" = ?', query.trigger)
    if query.repository is not None:
        where.add("repository = ?", query.repository)
    for column in ("created_at", "updated_at"):
        low = getattr(query, f"{column}__gte")
        high = getattr(query, f"{column}__lt")
        if low is not None:
            where.add(f"{column} >= ?", to_micros(low))
        if high is not None:
            where.add(f"{column} < ?", to_micros(high))
    return where


def _task_where(query: StartTaskQuery) -> Where:
    where = Where()
    if query.user_id is not None:
        where.add("user_id = ?", query.user_id)
    if query.conversation_id is not None:
        where.add("conversation_id = ?", query.conversation_id)
    if query.status is not None:
        where.add("status = ?", query.status.value)
    if query.created_at__gte is not None:
        where.add("created_at >= ?", to_micros(query.created_at__gte))
    return where


def _fts_phrase(needle: str) -> str:
    """An FTS5 phrase matching ``needle`` literally (a substring, with trigrams)."""
    return '"' + needle.replace('"', '""') + '"'


# --- the store -------------------------------------------------------------------------------


class ConversationStore:
    """Conversations and start tasks in ``db_path`` (created, with mode 0600, if missing)."""

    def __init__(
        self, db_path: Path | str, *, title_scan_window: int = DEFAULT_TITLE_SCAN_WINDOW
    ) -> None:
        if title_scan_window < 1:
            raise ValueError(f"title_scan_window must be >= 1, got {title_scan_window}")
        self.db_path = Path(db_path)
        self.title_scan_window = title_scan_window
        self._lock = threading.RLock()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            # Titles and requests are private: the database is the owner's only.
            os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._conn = sqlite3.connect(
            self.db_path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # we BEGIN and COMMIT ourselves
            check_same_thread=False,  # guarded by self._lock
        )
        self._conn.row_factory = sqlite3.Row
        self._closed = False
        try:
            self._configure()
            self._migrate()
            self.has_title_index = self._ensure_title_index()
        except BaseException:
            self._closed = True
            self._conn.close()
            raise

    # --- connection ----------------------------------------------------------------------

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; writers take the write lock up front."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"ConversationStore({self.db_path}) is closed")
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _configure(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", self.db_path, mode)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")

    def _migrate(self) -> None:
        with self._transaction(write=True) as db:
            migrate(db, self.db_path)

    def _ensure_title_index(self) -> bool:
        with self._transaction(write=True) as db:
            return ensure_title_index(db)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- generic rows ----------------------------------------------------------------------

    def _insert(self, db: sqlite3.Connection, table: _Table[M], item: M) -> None:
        row = table.to_row(item)
        columns = ", ".join(_quoted(column) for column in row)
        marks = ", ".join("?" for _ in row)
        try:
            db.execute(
                f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", tuple(row.values())
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"{table.name}: id {row['id']!r} already exists") from exc

    def _get(self, table: _Table[M], item_id: str, user_id: str | None) -> M | None:
        return self._get_many(table, [item_id], user_id)[0]

    def _get_many(
        self, table: _Table[M], ids: Sequence[str], user_id: str | None
    ) -> list[M | None]:
        found: dict[str, M] = {}
        unique = list(dict.fromkeys(ids))
        with self._transaction(write=False) as db:
            for start in range(0, len(unique), _IDS_PER_QUERY):
                chunk = unique[start : start + _IDS_PER_QUERY]
                marks = ", ".join("?" for _ in chunk)
                for row in db.execute(
                    f"SELECT * FROM {table.name} WHERE id IN ({marks})", chunk
                ).fetchall():
                    if user_id is None or row["user_id"] == user_id:
                        found[row["id"]] = table.from_row(row)
        return [found.get(item_id) for item_id in ids]

    def _update(self, table: _Table[M], item_id: str, fields: Mapping[str, Any]) -> M | None:
        unknown = sorted(set(fields) - table.fields)
        if unknown:
            raise ValueError(f"{table.name}: unknown field(s) {', '.join(unknown)}")
        if "id" in fields:
            raise ValueError(f"{table.name}: the id of a row cannot change")
        changes = dict(fields)
        changes.setdefault("updated_at", utcnow())
        with self._transaction(write=True) as db:
            row = db.execute(f"SELECT * FROM {table.name} WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return None
            current = table.from_row(row)
            updated = table.model.model_validate({**current.model_dump(), **changes})
            new_row = table.to_row(updated)
            columns = set(changes)
            for name in changes:
                columns.update(table.derived.get(name, ()))
            ordered = [column for column in new_row if column in columns]
            assignments = ", ".join(f"{_quoted(column)} = ?" for column in ordered)
            db.execute(
                f"UPDATE {table.name} SET {assignments} WHERE id = ?",
                (*(new_row[column] for column in ordered), item_id),
            )
        return updated

    def _page(
        self,
        table: _Table[M],
        rows: list[sqlite3.Row],
        limit: int,
    ) -> tuple[list[M], str | None]:
        items = [table.from_row(row) for row in rows[:limit]]
        next_page_id = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_page_id = encode_page_id(table.page_kind, last[table.sort_column], last["id"])
        return items, next_page_id

    def _keyset(self, table: _Table[M], where: Where, page_id: str | None) -> None:
        if page_id is not None:
            sort_value, row_id = decode_page_id(table.page_kind, page_id)
            where.add(f"({table.sort_column}, id) < (?, ?)", sort_value, row_id)

    # --- conversations ---------------------------------------------------------------------

    def create(self, metadata: ConversationMetadata) -> ConversationMetadata:
        """Record a new conversation; ValueError if its id exists."""
        with self._transaction(write=True) as db:
            self._insert(db, _CONVERSATIONS, metadata)
        return metadata

    def create_many(self, items: Iterable[ConversationMetadata]) -> int:
        """Record many conversations in one transaction (imports, benchmarks).

        The title index is filled once after the rows rather than by the per-row trigger,
        which would cost most of the time; all of it commits or rolls back together.
        """
        rows = [_conversation_to_row(item) for item in items]
        if not rows:
            return 0
        columns = ", ".join(_quoted(column) for column in rows[0])
        marks = ", ".join("?" for _ in rows[0])
        with self._transaction(write=True) as db:
            # seq has no AUTOINCREMENT: new rows are numbered after the current maximum.
            last_seq = db.execute("SELECT coalesce(max(seq), 0) FROM conversations").fetchone()[0]
            if self.has_title_index:
                db.execute(f"DROP TRIGGER {TITLE_INSERT_TRIGGER}")
            try:
                db.executemany(
                    f"INSERT INTO conversations ({columns}) VALUES ({marks})",
                    [tuple(row.values()) for row in rows],
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"conversations: an id already exists ({exc})") from exc
            if self.has_title_index:
                db.execute(TITLE_BULK_FILL_SQL, (last_seq,))
                db.execute(TITLE_INSERT_TRIGGER_SQL)
        return len(rows)

    def get(self, conversation_id: str, user_id: str | None = None) -> ConversationMetadata | None:
        """The conversation, or None if missing or (with ``user_id``) someone else's."""
        return self._get(_CONVERSATIONS, conversation_id, user_id)

    def get_many(
        self, conversation_ids: Sequence[str], user_id: str | None = None
    ) -> list[ConversationMetadata | None]:
        """One result per id, in order; None where missing or not ``user_id``'s."""
        return self._get_many(_CONVERSATIONS, conversation_ids, user_id)

    def update(self, conversation_id: str, **fields: Any) -> ConversationMetadata | None:
        """Change fields (validated); ``updated_at`` moves to now unless given.

        Returns the updated conversation, or None if there is none with this id.
        """
        return self._update(_CONVERSATIONS, conversation_id, fields)

    def delete(self, conversation_id: str) -> bool:
        """Remove a conversation and its start tasks; False if it did not exist."""
        with self._transaction(write=True) as db:
            deleted = db.execute(
                "DELETE FROM conversations WHERE id = ?", (conversation_id,)
            ).rowcount
            db.execute("DELETE FROM start_tasks WHERE conversation_id = ?", (conversation_id,))
        return deleted > 0

    def search(
        self,
        query: ConversationQuery | None = None,
        /,
        *,
        page_id: str | None = None,
        limit: int = DEFAULT_PAGE_LIMIT,
        **filters: Any,
    ) -> ConversationPage:
        """One page of matching conversations, newest ``updated_at`` first.

        Filters come as a ``ConversationQuery`` and/or keywords of the same names.
        """
        resolved = build_query(ConversationQuery, query, filters)
        check_limit(limit)
        where = _conversation_where(resolved)
        self._keyset(_CONVERSATIONS, where, page_id)
        needle = fold_title(resolved.title__contains) or None
        with self._transaction(write=False) as db:
            if needle is None:
                rows = db.execute(
                    f"SELECT * FROM conversations WHERE {where.sql()}"
                    " ORDER BY updated_at DESC, id DESC LIMIT ?",
                    (*where.params, limit + 1),
                ).fetchall()
            else:
                rows = self._search_titles(db, where, needle, limit + 1)
        items, next_page_id = self._page(_CONVERSATIONS, rows, limit)
        return ConversationPage(items=items, next_page_id=next_page_id)

    def _search_titles(
        self, db: sqlite3.Connection, where: Where, needle: str, want: int
    ) -> list[sqlite3.Row]:
        """The first ``want`` rows whose title contains ``needle``, newest first.

        Scans the newest rows in order first: a common word fills the page at once. Only
        if the window holds too few matches is the trigram index asked, which is fast
        exactly when matches are rare.
        """
        window = db.execute(
            f"SELECT seq, title_folded FROM conversations WHERE {where.sql()}"
            " ORDER BY updated_at DESC, id DESC LIMIT ?",
            (*where.params, self.title_scan_window),
        )
        hits: list[int] = []
        scanned = 0
        for seq, title in window:  # stepped lazily: stops as soon as the page is full
            scanned += 1
            if title and needle in title:
                hits.append(seq)
                if len(hits) >= want:
                    break
        window.close()
        if len(hits) >= want or scanned < self.title_scan_window:
            if not hits:
                return []
            marks = ", ".join("?" for _ in hits)
            by_seq = {
                row["seq"]: row
                for row in db.execute(
                    f"SELECT * FROM conversations WHERE seq IN ({marks})", hits
                ).fetchall()
            }
            return [by_seq[seq] for seq in hits]
        source, params = self._title_source(where, needle)
        return db.execute(
            f"SELECT c.* FROM {source} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
            (*params, want),
        ).fetchall()

    def _title_source(self, where: Where, needle: str) -> tuple[str, list[Any]]:
        """FROM/WHERE for rows ``c`` matching every filter and the title needle."""
        if self.has_title_index and len(needle) >= _MIN_FTS_NEEDLE:
            # CROSS JOIN keeps the index as the outer loop: the planner must not scan c.
            return (
                f"{TITLE_INDEX} t CROSS JOIN conversations c ON c.seq = t.rowid"
                f" WHERE {TITLE_INDEX} MATCH ? AND {where.sql()}",
                [_fts_phrase(needle), *where.params],
            )
        return (
            f"conversations c WHERE instr(c.title_folded, ?) > 0 AND {where.sql()}",
            [needle, *where.params],
        )

    def count(self, query: ConversationQuery | None = None, /, **filters: Any) -> int:
        """How many conversations match (the same filters as ``search``)."""
        resolved = build_query(ConversationQuery, query, filters)
        where = _conversation_where(resolved)
        needle = fold_title(resolved.title__contains) or None
        with self._transaction(write=False) as db:
            if needle is None:
                sql, params = (
                    f"SELECT count(*) FROM conversations WHERE {where.sql()}",
                    where.params,
                )
            else:
                source, params = self._title_source(where, needle)
                sql = f"SELECT count(*) FROM {source}"
            return int(db.execute(sql, params).fetchone()[0])

    # --- start tasks -------------------------------------------------------------------------

    def create_start_task(self, task: StartTask) -> StartTask:
        """Record a start task (its request is already sanitized by the model)."""
        with self._transaction(write=True) as db:
            self._insert(db, _START_TASKS, task)
        return task

    def update_start_task(self, task_id: str, **fields: Any) -> StartTask | None:
        """Change fields (e.g. status, detail, conversation_id); bumps ``updated_at``."""
        return self._update(_START_TASKS, task_id, fields)

    def get_start_task(self, task_id: str, user_id: str | None = None) -> StartTask | None:
        return self._get(_START_TASKS, task_id, user_id)

    def get_start_tasks(
        self, task_ids: Sequence[str], user_id: str | None = None
    ) -> list[StartTask | None]:
        """One result per id, in order; None where missing or not ``user_id``'s."""
        return self._get_many(_START_TASKS, task_ids, user_id)

    def search_start_tasks(
        self,
        query: StartTaskQuery | None = None,
        /,
        *,
        page_id: str | None = None,
        limit: int = DEFAULT_PAGE_LIMIT,
        **filters: Any,
    ) -> StartTaskPage:
        """One page of matching start tasks, newest ``created_at`` first."""
        resolved = build_query(StartTaskQuery, query, filters)
        check_limit(limit)
        where = _task_where(resolved)
        self._keyset(_START_TASKS, where, page_id)
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT * FROM start_tasks WHERE {where.sql()}"
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (*where.params, limit + 1),
            ).fetchall()
        items, next_page_id = self._page(_START_TASKS, rows, limit)
        return StartTaskPage(items=items, next_page_id=next_page_id)

    def count_start_tasks(self, query: StartTaskQuery | None = None, /, **filters: Any) -> int:
        resolved = build_query(StartTaskQuery, query, filters)
        where = _task_where(resolved)
        with self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT count(*) FROM start_tasks WHERE {where.sql()}", where.params
            ).fetchone()
        return int(row[0])
