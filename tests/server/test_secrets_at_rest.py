"""Secrets at rest: the data dir and database are the owner's only, signing secrets and push
credentials are sealed with the server's key (rows stored in clear by older versions still work
and are sealed at start), and the demo admin key is printed on the first start only."""

import sqlite3
import stat
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Text, select, type_coerce

from server.accounts.auth import issue_token, verify_token
from server.accounts.tenants import create_tenant
from server.core.db import Database
from server.core.models import Tenant
from server.core.secretbox import SecretBox, SecretKeyError, reseal_clear_values
from server.core.settings import Settings
from server.migrations import upgrade
from server.push.models import PushTenantConfig
from tests.support.inproc import InProcServer
from tests.support.live import LiveServer, free_port


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_private_files_and_seals_the_signing_secret(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"  # nothing exists yet: the server creates it
    settings = Settings(data_dir=data, host="127.0.0.1", port=free_port(), server="uvicorn", demo_knowledge=False)
    with InProcServer(settings) as srv:
        token = srv.token("alice")
        assert httpx.get(srv.url + "/v1/conversations", headers={"Authorization": f"Bearer {token}"},
                         timeout=10).status_code == 200
    assert _mode(data) == 0o700
    for name in ("parley.db", "demo-admin-key.txt", "demo-agent-login.txt", "secret.key"):
        assert _mode(data / name) == 0o600, name
    for extra in ("parley.db-wal", "parley.db-shm"):
        if (data / extra).exists():
            assert _mode(data / extra) & 0o077 == 0, extra
    with sqlite3.connect(data / "parley.db") as conn:
        (stored,) = conn.execute("SELECT signing_secret FROM tenants").fetchone()
    assert stored.startswith("enc1:")
    box = SecretBox((data / "secret.key").read_text().strip())
    secret = box.open(stored)
    assert secret not in stored and len(secret) >= 48


async def test_rows_in_clear_keep_working_and_are_sealed_at_start(database_url: str) -> None:
    old = Database(database_url)  # as an older version wrote them: no key, secrets in clear
    await upgrade(old)
    created = await create_tenant(old, "Legacy")
    account = {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nabc\n", "client_email": "x"}
    async with old.write() as s:
        s.add(PushTenantConfig(tenant_id=created.tenant.id, webhook_secret="whsec-1", vapid_private_key="vapid-1",
                               fcm_service_account=account, apns_key_pem="-----BEGIN EC-----"))
    old_token = issue_token(created.tenant, sub="u1", role="user", ttl_s=600)
    await old.dispose()

    box = SecretBox("a server key of enough length")
    db = Database(database_url, secret_box=box)
    try:
        assert (await verify_token(db, old_token)).id == "u1"  # clear rows read as they are
        assert await reseal_clear_values(db) == 2
        assert await reseal_clear_values(db) == 0
        async with db.session() as s:
            conn = await s.connection()
            raw = (await conn.execute(select(type_coerce(Tenant.signing_secret, Text)))).scalar_one()  # type: ignore[arg-type]
            raw_push = (await conn.execute(select(*(type_coerce(c, Text) for c in (  # type: ignore[call-overload]
                PushTenantConfig.webhook_secret, PushTenantConfig.vapid_private_key,
                PushTenantConfig.fcm_service_account, PushTenantConfig.apns_key_pem))))).one()
            tenant = await s.get(Tenant, created.tenant.id)
            cfg = await s.get(PushTenantConfig, created.tenant.id)
        assert raw.startswith("enc1:") and created.tenant.signing_secret not in raw
        assert all(v.startswith("enc1:") for v in raw_push)
        assert "PRIVATE KEY" not in "".join(raw_push) and "whsec-1" not in "".join(raw_push)
        assert tenant is not None and tenant.signing_secret == created.tenant.signing_secret
        assert cfg is not None and cfg.webhook_secret == "whsec-1" and cfg.fcm_service_account == account
        assert cfg.vapid_private_key == "vapid-1" and cfg.apns_key_pem == "-----BEGIN EC-----"
        assert (await verify_token(db, old_token)).id == "u1"  # the same secret, now sealed
    finally:
        await db.dispose()

    wrong = Database(database_url, secret_box=SecretBox("some other key of enough length"))
    try:
        with pytest.raises(SecretKeyError, match="PARLEY_SECRET_KEY"):
            async with wrong.session() as s:
                await s.get(Tenant, created.tenant.id)
    finally:
        await wrong.dispose()


def test_the_demo_admin_key_is_printed_on_the_first_start_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = LiveServer("uvicorn", free_port(), data, {}).start(timeout=90)
    try:
        key = first.admin_key
        token = first.token("alice")
    finally:
        first.stop()
    assert key in first.log()
    second = LiveServer("uvicorn", free_port(), data, {}).start(timeout=90)
    try:
        # the sealed signing secret opens with the kept key: tokens survive a restart
        assert httpx.get(second.url + "/v1/conversations", headers={"Authorization": f"Bearer {token}"},
                         timeout=10).status_code == 200
    finally:
        second.stop()
    assert key not in second.log()
    assert str(data / "demo-admin-key.txt") in second.log()
    # the demo agent's generated password too: printed on the first start only
    password = (data / "demo-agent-login.txt").read_text().split("password: ", 1)[1].strip()
    assert password in first.log()
    assert password not in second.log()
    assert str(data / "demo-agent-login.txt") in second.log()
