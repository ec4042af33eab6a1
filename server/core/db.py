"""The database port: one async engine (SQLite with WAL by default, PostgreSQL via asyncpg)
and a session factory. Schema changes go through Alembic (``server/migrations``)."""

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlmodel.ext.asyncio.session import AsyncSession

from server.core.secretbox import SecretBox, attach, private_dir
from server.core.settings import Settings, default
from server.errors import Unavailable

__all__ = ["Database"]

P = ParamSpec("P")
T = TypeVar("T")


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
        # SQLite's hot write path (``run_in_transaction``): one thread owning one sqlite3 connection,
        # so a whole transaction is one hop off the event loop instead of one per statement.
        self._writer_engine: Engine | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        if self.is_sqlite and _sqlite_file(url):
            self._writer_engine = _sqlite_writer_engine(url, lock_timeout_s)
            self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-sqlite-writer")
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
        if self._writer_engine is not None:
            attach(self._writer_engine.dialect, box)

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

    async def run_in_transaction(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args,
                                 **kwargs: P.kwargs) -> T:
        """Run ``fn(conn, *args)``, plain synchronous SQLAlchemy Core, in ONE write transaction that
        commits when it returns. On a SQLite file it runs in the database's writer thread on its own
        connection (one hop for the whole transaction, under the write lock); on PostgreSQL through
        the async connection (each statement one round trip, executemany pipelined by asyncpg)."""
        try:
            if self._writer_engine is not None and self._writer_thread is not None:
                assert self.write_lock is not None
                engine, loop = self._writer_engine, asyncio.get_running_loop()

                def run() -> T:
                    with engine.begin() as conn:
                        return fn(conn, *args, **kwargs)

                async with self.write_lock:
                    return await loop.run_in_executor(self._writer_thread, run)
            if self.write_lock is not None:  # an in-memory SQLite: the async engine's own connection
                async with self.write_lock, self.engine.begin() as aconn:
                    return await aconn.run_sync(fn, *args, **kwargs)
            async with self.engine.begin() as aconn:
                return await aconn.run_sync(fn, *args, **kwargs)
        except (OperationalError, DBAPIError, OSError, ConnectionError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connectivity(exc):
                raise
            raise Unavailable("database unavailable", retry_after_ms=1000) from exc

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
        if self._writer_engine is not None and self._writer_thread is not None:
            writer, engine = self._writer_thread, self._writer_engine
            await asyncio.get_running_loop().run_in_executor(writer, engine.dispose)
            writer.shutdown(wait=True)
            self._writer_engine = self._writer_thread = None
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


def _sqlite_file(url: str) -> bool:
    path = make_url(url).database
    return bool(path) and path != ":memory:" and not str(path).startswith("file:")


def _sqlite_writer_engine(url: str, lock_timeout_s: float) -> Engine:
    """A synchronous engine on the same file for the writer thread: one connection (StaticPool),
    with SQLite's own transaction control (BEGIN IMMEDIATE takes the write lock up front, and
    SAVEPOINTs work, which the sqlite3 module's implicit transactions would break)."""
    engine = create_engine(make_url(url).set(drivername="sqlite+pysqlite"), poolclass=StaticPool,
                           connect_args={"timeout": lock_timeout_s, "check_same_thread": False})
    pragmas = _sqlite_pragmas(lock_timeout_s)

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        pragmas(dbapi_conn, record)

    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


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
