"""The SQLite schema of ``convo.db`` and its migrations (``PRAGMA user_version``).

Timestamps are INTEGER microseconds since the epoch (UTC): exact, compact and ordered, so
range filters and ``ORDER BY updated_at`` run on plain indexes. Rows carry an INTEGER
``seq`` primary key that the FTS title index points at (it never changes, even on VACUUM).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

# One tuple of statements per schema version; PRAGMA user_version records how many ran.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE conversations (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            user_id TEXT,
            title TEXT,
            title_folded TEXT,
            status TEXT NOT NULL,
            agent_state TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            "trigger" TEXT NOT NULL,
            repository TEXT,
            model TEXT,
            sandbox TEXT NOT NULL,
            workspace TEXT,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost REAL NOT NULL,
            last_event_id INTEGER NOT NULL,
            error TEXT,
            tags TEXT NOT NULL
        )""",
        # Ordering (updated_at DESC, id DESC) rides on these; equality filters lead. The
        # two list indexes also cover title_folded, so a title scan never leaves them.
        "CREATE INDEX conversations_updated ON conversations (updated_at, id, title_folded)",
        "CREATE INDEX conversations_user_updated"
        " ON conversations (user_id, updated_at, id, title_folded)",
        "CREATE INDEX conversations_created ON conversations (created_at)",
        "CREATE INDEX conversations_user_created ON conversations (user_id, created_at)",
        "CREATE INDEX conversations_status ON conversations (status, updated_at, id)",
        "CREATE INDEX conversations_user_status ON conversations (user_id, status, updated_at, id)",
        'CREATE INDEX conversations_trigger ON conversations ("trigger", updated_at, id)',
        "CREATE INDEX conversations_user_trigger"
        ' ON conversations (user_id, "trigger", updated_at, id)',
        "CREATE INDEX conversations_repository ON conversations (repository, updated_at, id)",
        "CREATE INDEX conversations_user_repository"
        " ON conversations (user_id, repository, updated_at, id)",
        """CREATE TABLE start_tasks (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            conversation_id TEXT,
            user_id TEXT,
            status TEXT NOT NULL,
            detail TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            request TEXT NOT NULL
        )""",
        "CREATE INDEX start_tasks_created ON start_tasks (created_at, id)",
        "CREATE INDEX start_tasks_user ON start_tasks (user_id, created_at, id)",
        "CREATE INDEX start_tasks_conversation ON start_tasks (conversation_id, created_at, id)",
        "CREATE INDEX start_tasks_status ON start_tasks (status, created_at, id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Optional: created when this SQLite has FTS5 with the trigram tokenizer (3.34+). The
# titles are case-folded in Python, so the index matches case-sensitively.
TITLE_INDEX = "conversation_titles"
TITLE_INSERT_TRIGGER = "conversations_title_insert"
TITLE_INSERT_TRIGGER_SQL = f"""CREATE TRIGGER {TITLE_INSERT_TRIGGER} AFTER INSERT ON conversations
    BEGIN
        INSERT INTO {TITLE_INDEX}(rowid, title_folded) VALUES (new.seq, new.title_folded);
    END"""
# Filling the index row by row costs most of a bulk insert; create_many fills it in one go.
TITLE_BULK_FILL_SQL = (
    f"INSERT INTO {TITLE_INDEX}(rowid, title_folded)"
    " SELECT seq, title_folded FROM conversations WHERE seq > ?"
)
TITLE_INDEX_SQL: tuple[str, ...] = (
    f"""CREATE VIRTUAL TABLE {TITLE_INDEX} USING fts5(
        title_folded, content='conversations', content_rowid='seq',
        tokenize='trigram case_sensitive 1')""",
    TITLE_INSERT_TRIGGER_SQL,
    f"""CREATE TRIGGER conversations_title_delete AFTER DELETE ON conversations BEGIN
        INSERT INTO {TITLE_INDEX}({TITLE_INDEX}, rowid, title_folded)
            VALUES ('delete', old.seq, old.title_folded);
    END""",
    f"""CREATE TRIGGER conversations_title_update AFTER UPDATE OF title_folded
        ON conversations BEGIN
        INSERT INTO {TITLE_INDEX}({TITLE_INDEX}, rowid, title_folded)
            VALUES ('delete', old.seq, old.title_folded);
        INSERT INTO {TITLE_INDEX}(rowid, title_folded) VALUES (new.seq, new.title_folded);
    END""",
    f"INSERT INTO {TITLE_INDEX}({TITLE_INDEX}) VALUES ('rebuild')",
)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to SCHEMA_VERSION (inside the caller's write transaction)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path} has schema version {version}, newer than this jupyter-convo "
            f"understands ({SCHEMA_VERSION}); upgrade jupyter-convo"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target - 1]:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {target}")
        log.info("Migrated %s to schema version %s", path, target)


def ensure_title_index(db: sqlite3.Connection) -> bool:
    """Create the trigram title index if this SQLite can; False means titles are scanned."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TITLE_INDEX,)).fetchone():
        return True
    try:
        db.execute(TITLE_INDEX_SQL[0])
    except sqlite3.OperationalError as exc:
        log.info(
            "SQLite %s has no FTS5 trigram tokenizer (%s); title search scans rows",
            sqlite3.sqlite_version,
            exc,
        )
        return False
    for statement in TITLE_INDEX_SQL[1:]:
        db.execute(statement)
    return True
