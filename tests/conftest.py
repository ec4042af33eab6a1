"""Shared fixtures: databases (SQLite and PostgreSQL), Redis, apps and live servers.

PostgreSQL and Redis are expected on their standard loopback ports. Without them a test skips
with the reason shown; under CI=true it fails instead, because CI must run everything."""

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CI = os.environ.get("CI") == "true"
PG_ADMIN_DSN = os.environ.get("PARLEY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PARLEY_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _no_socket_outlives_its_test(request: pytest.FixtureRequest) -> None:
    """Close the protocol clients an async test left open, on the test's own loop."""
    if asyncio.iscoroutinefunction(getattr(request.node, "obj", None)):
        request.getfixturevalue("_close_ws_clients")


@pytest.fixture
async def _close_ws_clients() -> AsyncIterator[None]:
    yield
    from tests.support.ws import WsClient

    loop = asyncio.get_running_loop()
    for client in list(WsClient.opened):
        if client.loop is loop:
            with contextlib.suppress(Exception):  # broad: a client already gone is as good as closed
                await asyncio.wait_for(client.close(), 5)
            client.ws.transport.abort()  # whatever the close handshake did, the socket is closed now
        if client.loop is loop or client.loop.is_closed():
            WsClient.opened.discard(client)
    await asyncio.sleep(0)  # let the transports report connection_lost


def need(service: str, ok: bool, why: str = "") -> None:
    if ok:
        return
    msg = f"{service} is not reachable{': ' + why if why else ''}"
    if CI:
        pytest.fail(msg + " (required under CI=true)")
    pytest.skip(msg)


async def _pg_admin():  # type: ignore[no-untyped-def]
    import asyncpg

    return await asyncpg.connect(PG_ADMIN_DSN, timeout=3)


async def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; returns its SQLAlchemy URL."""
    try:
        conn = await _pg_admin()
    except Exception as exc:  # broad: any failure to reach PostgreSQL: skip (or fail under CI), then re-raised
        need("PostgreSQL", False, repr(exc))
        raise
    name = "parley_t_" + uuid.uuid4().hex[:12]
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"


async def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    try:
        conn = await _pg_admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    except Exception:  # noqa: BLE001 (cleanup of a test database: a failure must not hide the test's own result)
        pass


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Storage tests run on both backends, as Litestar's channel tests run on every backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}"
        return
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture
async def redis_url() -> str:
    from redis.asyncio import Redis

    r = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        ok = bool(await asyncio.wait_for(r.ping(), 3))
    except Exception:  # noqa: BLE001 (any failure to reach Redis means: skip the Redis tests)
        ok = False
    finally:
        await r.aclose()
    need("Redis", ok)
    return REDIS_URL
