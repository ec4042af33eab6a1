"""A migrated database holding one tenant, on SQLite or PostgreSQL, for service-level tests that
run without an app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from server.accounts.tenants import create_tenant
from server.core.db import Database
from server.migrations import upgrade
from tests.conftest import create_pg_database, drop_pg_database

__all__ = ["tenant_database", "tenant_database_fixture"]


@asynccontextmanager
async def tenant_database(kind: str, folder: Path, *, pool_size: int = 10) -> AsyncIterator[tuple[Database, str]]:
    """``(db, tenant_id)``: a fresh SQLite file in ``folder``, or a fresh PostgreSQL database that
    is dropped afterwards."""
    url = f"sqlite+aiosqlite:///{folder / 'parley.db'}" if kind == "sqlite" else await create_pg_database()
    db = Database(url, pool_size=pool_size)
    try:
        await upgrade(db)
        tenant = (await create_tenant(db, "Acme")).tenant
        yield db, tenant.id
    finally:
        await db.dispose()
        if kind == "postgres":
            await drop_pg_database(url)


def tenant_database_fixture(folder: str, *, pool_size: int = 10) -> Any:
    """A module-scoped fixture giving ``(db, tenant_id)`` once per backend (SQLite, PostgreSQL):
    the module's tests share the database and one event loop, each in conversations of its own."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
    async def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                      ) -> AsyncIterator[tuple[Database, str]]:
        async with tenant_database(request.param, tmp_path_factory.mktemp(folder), pool_size=pool_size) as b:
            yield b

    return backend
