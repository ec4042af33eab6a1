"""Fixtures: a database per test on SQLite and on PostgreSQL (a fresh database with a random
name, dropped after), a simulated clock, and helpers to seed tenants, users and Web Push
subscriptions whose private keys the tests keep (to decrypt what the server sent)."""

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.core.db import Database
from server.core.models import Tenant, User, new_id
from server.core.settings import PushSettings
from server.push.egress import EgressPolicy
from server.push.providers.webpush import b64url

PG_DSN = os.environ.get("PARLEY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


# The local push service of these tests is "push.local", reached through a mock transport: it is
# trusted explicitly, and resolves (for registration's check) to a public address never dialled.
LOCAL_PUSH_HOSTS = ("push.local",)


def public_resolver(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


def local_push_settings(**kw: Any) -> PushSettings:
    return PushSettings(egress_hosts=LOCAL_PUSH_HOSTS, **kw)


def local_egress(settings: PushSettings | None = None) -> EgressPolicy:
    return EgressPolicy.from_settings(settings or local_push_settings(), public_resolver)


class SimClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2025, 3, 3, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t = self.t + timedelta(**kw)

    def ts(self) -> float:
        return self.t.timestamp()


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


async def _pg_available() -> bool:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'push.db'}")
        await database.create_all()
        yield database
        await database.dispose()
        return
    if not await _pg_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable at {PG_DSN} (CI=true)")
        pytest.skip(f"PostgreSQL unreachable at {PG_DSN}")
    name = f"push_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    database = Database(f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}", pool_size=5)
    try:
        await database.create_all()
        yield database
    finally:
        await database.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def make_tenant(db: Database, name: str = "Acme") -> Tenant:
    t = Tenant(name=name, admin_key_hash=new_id() + new_id(), signing_secret="s" * 40, widget_key="w_" + new_id())
    async with db.write() as s:
        s.add(t)
    return t


async def make_user(db: Database, tenant_id: str, external_id: str, *, name: str | None = None,
                    timezone: str | None = None, attributes: dict[str, Any] | None = None) -> User:
    u = User(tenant_id=tenant_id, external_id=external_id, name=name, timezone=timezone,
             attributes=attributes or {})
    async with db.write() as s:
        s.add(u)
    return u


@dataclass
class BrowserSub:
    """A browser's side of a Web Push subscription: we keep the private key to decrypt."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def subscription(self) -> dict[str, Any]:
        pub = self.private_key.public_key().public_bytes(serialization.Encoding.X962,
                                                         serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(pub), "auth": b64url(self.auth)}}


def new_browser_sub(endpoint: str) -> BrowserSub:
    return BrowserSub(endpoint, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))


@pytest.fixture
def browser_sub() -> Callable[[str], BrowserSub]:
    return new_browser_sub
