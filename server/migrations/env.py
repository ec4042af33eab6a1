"""Alembic environment: runs on the connection handed in by ``server.migrations.upgrade``, or,
for ``alembic revision --autogenerate``, on the URL in the config."""

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import server.accounts.teams
import server.attachments.models
import server.chat.models
import server.core.models
import server.desk.models
import server.push.models  # noqa: F401

target_metadata = SQLModel.metadata


def _run(connection: Any) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    async def _main() -> None:
        engine = create_async_engine(context.config.get_main_option("sqlalchemy.url") or "")
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()

    asyncio.run(_main())
