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


async def test_migrations_match_models(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    await upgrade(db)  # idempotent: a second start changes nothing

    def diff(conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, SQLModel.metadata))

    async with db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    await db.dispose()
    assert changes == []
