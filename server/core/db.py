"""The database port: one async engine (SQLite with WAL by default, PostgreSQL via asyncpg)
and a session factory. Schema changes go through Alembic (``server/migrations``)."""

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from server.core.secretbox import SecretBox, attach, private_dir
from server.core.settings import Settings, default
from server.errors import Unavailable

__all__ = ["Database"]


class Database:
    def __init__(self, url: str, *, pool_size: int = default("db_pool_size"), echo: bool = False,
                 secret_box: SecretBox | None = None, pool_timeout_s: float = default("db_pool_timeout_s"),
                 connect_timeout_s: float = default("db_connect_timeout_s"),
                 statement_timeout_s: float = default("db_statement_timeout_s"),
                 lock_timeout_s: float = default("db_lock_timeout_s"),
                 ping_timeout_s: float = default("db_ping_timeout_s")) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _private_sqlite_file(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": lock_timeout_s}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=pool_timeout_s)
            kwargs["connect_args"] = {"timeout": connect_timeout_s, "command_timeout": statement_timeout_s}
        self.ping_timeout_s = ping_timeout_s
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas(lock_timeout_s))
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        # SQLite allows one writer; queueing writers here beats SQLITE_BUSY retries.
        self.write_lock = asyncio.Lock() if self.is_sqlite else None
        self.use_secret_box(secret_box)

    @classmethod
    def from_settings(cls, settings: Settings, *, secret_box: SecretBox | None = None) -> "Database":
        return cls(settings.resolved_database_url(), pool_size=settings.db_pool_size, secret_box=secret_box,
                   pool_timeout_s=settings.db_pool_timeout_s, connect_timeout_s=settings.db_connect_timeout_s,
                   statement_timeout_s=settings.db_statement_timeout_s, lock_timeout_s=settings.db_lock_timeout_s,
                   ping_timeout_s=settings.db_ping_timeout_s)

    def use_secret_box(self, box: SecretBox | None) -> None:
        """Columns typed ``Sealed`` are sealed and opened with this box (see server.core.secretbox)."""
        attach(self.engine.sync_engine.dialect, box)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self.sessions() as s:
                yield s
        except (OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connectivity(exc):
                raise
            raise Unavailable("database unavailable", retry_after_ms=1000) from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session for one write transaction; commits on success."""
        if self.write_lock is None:
            async with self.session() as s, s.begin():
                yield s
            return
        async with self.write_lock, self.session() as s, s.begin():
            yield s

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), self.ping_timeout_s)
            return True
        except Exception:  # noqa: BLE001 (whatever the driver raises, the database is not ready)
            return False

    async def create_all(self) -> None:
        from sqlmodel import SQLModel

        import server.core.models  # noqa: F401  (capability packages register their own tables on import)

        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _private_sqlite_file(url: str) -> None:
    """The database holds every tenant's data: create it (and its folder) for the owner only.
    SQLite gives the -wal and -shm files the mode of the database file."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    file = Path(path)
    private_dir(file.parent)
    os.close(os.open(file, os.O_RDWR | os.O_CREAT, 0o600))
    file.chmod(0o600)


def _sqlite_pragmas(lock_timeout_s: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(lock_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def _is_connectivity(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    if exc.connection_invalidated:
        return True
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    msg = str(exc.orig).lower()
    return any(
        s in name or s in msg
        for s in ("Connection", "CannotConnect", "connection", "closed", "refused", "timeout", "too many")
    )
