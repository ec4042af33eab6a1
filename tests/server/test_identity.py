"""Identity verification for the widget through the real server, on SQLite and PostgreSQL: a visitor the
business's backend vouched for (an HMAC of the user id, or a JWT minted with the tenant's identity secret)
reads their own history; an unsigned, wrongly signed, expired, over-long, foreign or stale identity gets an
anonymous session and can never read a known user's conversations; the secret is the admin's, sealed at
rest, and rotating it voids the old signatures."""

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import Text, type_coerce
from sqlmodel import select

from server.accounts.tenants import create_tenant
from server.core.models import Tenant
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.http import err
from tests.support.inproc import FAST, InProcServer, make_settings


@dataclass
class World:
    srv: InProcServer
    widget_key: str
    secret: str
    other_secret: str  # another tenant's identity secret
    customer: str  # a known user of this tenant, with a conversation
    conv: str
    admin_headers: dict[str, str]

    def session(self, **body: Any) -> httpx.Response:
        with httpx.Client(base_url=self.srv.url, timeout=10) as c:
            return c.post("/v1/widget/session", json={"widget_key": self.widget_key, **body})


def sign(secret: str, user_id: str) -> str:
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"identity-{request.param}")
    srv = InProcServer(make_settings(data, url, **FAST)).start().without_bot()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        admin = {"Authorization": f"Bearer {srv.admin_key}"}
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            secret = c.get("/v1/tenant/identity", headers=admin).json()["secret"]
            other_secret = c.get("/v1/tenant/identity",
                                 headers={"Authorization": f"Bearer {other.admin_key}"}).json()["secret"]
        widget_key = srv.call(_widget_key(srv))
        customer = f"cust-{uuid.uuid4().hex[:6]}"
        token = srv.token(customer, name="Ada")
        with httpx.Client(base_url=srv.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.post("/v1/conversations", json={"text": "my address is 1 Secret Lane"})
            conv = r.json()["conversation"]["id"]
        yield World(srv, widget_key, secret, other_secret, customer, conv, admin)
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


async def _widget_key(srv: InProcServer) -> str:
    async with srv.app.state.db.session() as s:
        tenants = (await s.exec(select(Tenant).order_by(Tenant.created_at))).all()  # type: ignore[arg-type]
    return str(tenants[0].widget_key)


def history(w: World, session: httpx.Response) -> tuple[list[str], int]:
    """The conversations the session lists, and the status of reading the customer's conversation."""
    headers = {"Authorization": f"Bearer {session.json()['token']}"}
    with httpx.Client(base_url=w.srv.url, timeout=10, headers=headers) as c:
        listed = [x["id"] for x in c.get("/v1/conversations").json()["conversations"]]
        return listed, c.get(f"/v1/conversations/{w.conv}/messages").status_code


def assert_anonymous(w: World, r: httpx.Response) -> None:
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user_id"].startswith("anon_") and (body["identified"], body["verified"]) == (False, False)
    assert history(w, r) == ([], 404)


def test_a_signed_user_id_reads_its_own_history(w: World) -> None:
    r = w.session(user_id=w.customer, user_hash=sign(w.secret, w.customer), name="Ada")
    assert r.status_code == 201, r.text
    assert (r.json()["user_id"], r.json()["identified"], r.json()["verified"]) == (w.customer, True, True)
    assert history(w, r) == ([w.conv], 200)
    # the hash is hex, case-insensitive
    r = w.session(user_id=w.customer, user_hash=sign(w.secret, w.customer).upper())
    assert history(w, r) == ([w.conv], 200)


@pytest.mark.parametrize("case", ["unsigned", "wrong_hash", "hash_of_another_id", "other_tenants_secret",
                                  "empty_hash"])
def test_an_unverified_user_id_gets_an_anonymous_session_only(w: World, case: str) -> None:
    hashes = {"unsigned": None, "wrong_hash": "0" * 64, "hash_of_another_id": sign(w.secret, "cust-other"),
              "other_tenants_secret": sign(w.other_secret, w.customer), "empty_hash": ""}
    body: dict[str, Any] = {"user_id": w.customer}
    if hashes[case] is not None:
        body["user_hash"] = hashes[case]
    assert_anonymous(w, w.session(**body))


def _jwt(secret: str, sub: str, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600, **claims}, secret, algorithm="HS256")


def test_a_jwt_minted_with_the_identity_secret_identifies_the_user(w: World) -> None:
    r = w.session(user_jwt=_jwt(w.secret, w.customer, name="Ada L."))
    assert (r.status_code, r.json()["user_id"], r.json()["verified"]) == (201, w.customer, True)
    assert history(w, r) == ([w.conv], 200)


@pytest.mark.parametrize("case", ["wrong_secret", "expired", "too_long_lived", "no_exp", "alg_none",
                                  "signing_secret", "garbage"])
def test_a_bad_jwt_gets_an_anonymous_session_only(w: World, case: str) -> None:
    now = int(time.time())
    signing = w.srv.call(_signing_secret(w))
    tokens = {
        "wrong_secret": _jwt("not-the-secret-but-just-as-long-as-one-0123456789", w.customer),
        "expired": jwt.encode({"sub": w.customer, "iat": now - 900, "exp": now - 300}, w.secret, algorithm="HS256"),
        "too_long_lived": jwt.encode({"sub": w.customer, "iat": now, "exp": now + 400 * 24 * 3600}, w.secret,
                                     algorithm="HS256"),
        "no_exp": jwt.encode({"sub": w.customer}, w.secret, algorithm="HS256"),
        "alg_none": jwt.encode({"sub": w.customer, "exp": now + 600}, None, algorithm="none"),
        # the token-signing secret mints tokens; it does not vouch for widget visitors
        "signing_secret": _jwt(signing, w.customer),
        "garbage": "not.a.jwt",
    }
    assert_anonymous(w, w.session(user_jwt=tokens[case]))


async def _signing_secret(w: World) -> str:
    async with w.srv.app.state.db.session() as s:
        tenant = (await s.exec(select(Tenant).where(Tenant.widget_key == w.widget_key))).one()
    return str(tenant.signing_secret)


def test_anonymous_ids_cannot_be_claimed_and_bad_ids_are_refused(w: World) -> None:
    anon = w.session().json()["user_id"]
    r = w.session(user_id=anon, user_hash=sign(w.secret, anon))
    assert err(r) == (422, "validation_failed", "user_id")
    for bad in (" padded", "x" * 201, "tab\there"):
        assert w.session(user_id=bad, user_hash=sign(w.secret, bad)).status_code in (400, 422)


def test_rotating_the_secret_voids_the_old_signatures(w: World) -> None:
    old_hash = sign(w.secret, w.customer)
    with httpx.Client(base_url=w.srv.url, timeout=10, headers=w.admin_headers) as c:
        new = c.post("/v1/tenant/identity/rotate").json()["secret"]
        assert c.get("/v1/tenant/identity").json()["secret"] == new != w.secret
    try:
        assert_anonymous(w, w.session(user_id=w.customer, user_hash=old_hash))
        assert history(w, w.session(user_id=w.customer, user_hash=sign(new, w.customer))) == ([w.conv], 200)
    finally:
        w.secret = new


def test_with_verification_off_an_unsigned_id_is_taken_but_marked_unverified(w: World) -> None:
    with httpx.Client(base_url=w.srv.url, timeout=10, headers=w.admin_headers) as c:
        assert c.put("/v1/tenant/identity", json={"required": False}).json() == {"required": False}
    try:
        r = w.session(user_id="dev-user-1")
        assert (r.json()["user_id"], r.json()["identified"], r.json()["verified"]) == ("dev-user-1", True, False)
        # a wrong hash is no better than none, never better than a right one
        r = w.session(user_id=w.customer, user_hash="0" * 64)
        assert r.json()["verified"] is False
    finally:
        with httpx.Client(base_url=w.srv.url, timeout=10, headers=w.admin_headers) as c:
            assert c.put("/v1/tenant/identity", json={"required": True}).json() == {"required": True}
    assert_anonymous(w, w.session(user_id="dev-user-1"))


def test_the_secret_is_the_admins_and_sealed_at_rest(w: World) -> None:
    user = w.srv.token("someone")
    with httpx.Client(base_url=w.srv.url, timeout=10) as c:
        for path, method in (("/v1/tenant/identity", "GET"), ("/v1/tenant/identity", "PUT"),
                             ("/v1/tenant/identity/rotate", "POST")):
            body = {"required": False} if method == "PUT" else None
            assert c.request(method, path, json=body).status_code == 401
            r = c.request(method, path, json=body, headers={"Authorization": f"Bearer {user}"})
            assert err(r)[:2] == (403, "forbidden")

    async def raw() -> str:
        async with w.srv.app.state.db.session() as s:
            row = (await s.exec(select(type_coerce(Tenant.identity_secret, Text))  # type: ignore[call-overload]
                                .where(Tenant.widget_key == w.widget_key))).one()
        return str(row)

    stored = w.srv.call(raw())
    assert stored and w.secret not in stored
