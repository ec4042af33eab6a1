"""The Alembic revisions build exactly the schema the models describe, on both databases."""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import server.accounts.teams
import server.chat.models
import server.core.models
import server.desk.models
import server.push.models  # noqa: F401  (registers the push tables)
from server.core.db import Database
from server.migrations import upgrade


def _modelled(name: str | None, type_: str, _parent: Any) -> bool:
    """The search index (migration 0008: FTS5 tables on SQLite, an expression index on PostgreSQL) is
    kept out of the models on purpose."""
    return not (name or "").startswith(("messages_fts", "ix_messages_fts"))


async def test_migrations_match_models(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    await upgrade(db)  # idempotent: a second start changes nothing

    def diff(conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _modelled})
        return list(compare_metadata(ctx, SQLModel.metadata))

    async with db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    await db.dispose()
    assert changes == []
