"""search over messages: an FTS5 index kept by triggers on SQLite, a GIN full-text index on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:20:00.000000

SQLite: ``messages_fts``, an external-content FTS5 table over ``messages.text`` (unicode61, diacritics
folded), filled from the existing rows and kept in step by insert, update and delete triggers, so every
write path (the chat service's, an edit, an erasure) keeps it right without knowing of it.
PostgreSQL: an expression index ``to_tsvector('simple', text)`` that ``server.desk.search`` queries.
Neither is in the models' metadata (``tests/server/test_migrations.py`` leaves them out of its comparison).
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_UP = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='rowid', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END",
    "CREATE TRIGGER messages_fts_au AFTER UPDATE OF text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text); "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS messages_fts_au",
    "DROP TRIGGER IF EXISTS messages_fts_ad",
    "DROP TRIGGER IF EXISTS messages_fts_ai",
    "DROP TABLE IF EXISTS messages_fts",
]
_PG_UP = ["CREATE INDEX ix_messages_fts ON messages USING gin (to_tsvector('simple', text))"]
_PG_DOWN = ["DROP INDEX IF EXISTS ix_messages_fts"]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    _run(_SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _PG_UP)


def downgrade() -> None:
    _run(_SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _PG_DOWN)
