"""A migrated database holding one tenant, on SQLite or PostgreSQL, for service-level tests that
run without an app."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from server.accounts.tenants import create_tenant
from server.core.db import Database
from server.migrations import upgrade
from tests.conftest import create_pg_database, drop_pg_database

__all__ = ["tenant_database"]


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
