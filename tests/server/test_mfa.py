"""Two-factor sign-in for agents through the real server, on SQLite and PostgreSQL: enrolment with the
password and a first code, sign-in that asks for the code, a code never working twice, recovery codes
working once, a tenant requiring it of every agent, the admin's reset, and the secret sealed at rest."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import Text, type_coerce
from sqlmodel import select

from server.accounts.tenants import create_tenant
from server.core.models import Agent
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.http import err
from tests.support.inproc import FAST, InProcServer, make_settings

PASSWORD = "correct horse battery"


@dataclass
class World:
    srv: InProcServer
    other_admin: str

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=self.srv.url, timeout=20, headers=headers) as c:
            return c.post(path, json=body)

    def admin(self, method: str, path: str, body: Any = None, key: str | None = None) -> httpx.Response:
        with httpx.Client(base_url=self.srv.url, timeout=20,
                          headers={"Authorization": f"Bearer {key or self.srv.admin_key}"}) as c:
            return c.request(method, path, json=body)

    def new_agent(self) -> tuple[str, str]:
        email = f"a-{uuid.uuid4().hex[:8]}@x.io"
        r = self.admin("POST", "/v1/agents", {"name": "Agent", "email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), email

    def login(self, email: str, otp: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"email": email, "password": PASSWORD}
        if otp is not None:
            body["otp"] = otp
        return self.post("/v1/auth/login", body)

    def enrol(self, email: str) -> pyotp.TOTP:
        r = self.post("/v1/auth/mfa/enroll", {"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        totp = pyotp.TOTP(r.json()["secret"])
        assert r.json()["otpauth_uri"].startswith("otpauth://totp/Parley:")
        r = self.post("/v1/auth/mfa/confirm", {"email": email, "password": PASSWORD, "otp": totp.now()})
        assert r.status_code == 200, r.text
        self.codes = r.json()["recovery_codes"]
        return totp


def later(totp: pyotp.TOTP, steps: int = 1) -> str:
    """The code of a later time step (accepted one step ahead), so it is not the one enrolment used."""
    return str(totp.at(time.time() + 30 * steps))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"mfa-{request.param}")
    # a roomy login guard: the failures these tests make on purpose must not lock the accounts out
    srv = InProcServer(make_settings(data, url, login_lockout_failures=100, login_burst_per_account=100,
                                     login_burst_per_ip=500, **FAST)).start().without_bot()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        yield World(srv, other.admin_key)
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


def test_enrolment_then_sign_in_asks_for_the_code_and_a_code_works_once(w: World) -> None:
    _id, email = w.new_agent()
    assert w.login(email).status_code == 200  # no second factor yet
    r = w.post("/v1/auth/mfa/enroll", {"email": email, "password": "wrong password"})
    assert err(r)[:2] == (401, "token_invalid")
    r = w.post("/v1/auth/mfa/enroll", {"email": email, "password": PASSWORD})
    totp = pyotp.TOTP(r.json()["secret"])
    # a pending enrolment changes nothing until confirmed, and a wrong first code confirms nothing
    assert w.login(email).status_code == 200
    assert err(w.post("/v1/auth/mfa/confirm", {"email": email, "password": PASSWORD, "otp": "000000"})) == (
        401, "token_invalid", "otp")
    assert w.login(email).status_code == 200
    r = w.post("/v1/auth/mfa/confirm", {"email": email, "password": PASSWORD, "otp": totp.now()})
    assert r.status_code == 200 and len(r.json()["recovery_codes"]) == 10
    assert len(set(r.json()["recovery_codes"])) == 10

    assert err(w.login(email)) == (401, "auth_required", "otp")
    assert err(w.login(email, "123456" if totp.now() != "123456" else "654321")) == (401, "token_invalid", "otp")
    code = later(totp)
    r = w.login(email, code)
    assert r.status_code == 200, r.text
    assert w.login(email, code).status_code == 401  # never twice
    # enrolling again needs it off first
    assert err(w.post("/v1/auth/mfa/enroll", {"email": email, "password": PASSWORD}))[:2] == (422, "validation_failed")


def test_a_recovery_code_works_once(w: World) -> None:
    _id, email = w.new_agent()
    w.enrol(email)
    code = w.codes[3]
    assert w.login(email, code).status_code == 200
    assert err(w.login(email, code)) == (401, "token_invalid", "otp")
    assert w.login(email, w.codes[4].replace("-", "").upper()).status_code == 200  # as typed from paper


def test_a_tenant_requires_it_of_every_agent(w: World) -> None:
    _id, plain = w.new_agent()
    _id2, enrolled = w.new_agent()
    totp = w.enrol(enrolled)
    assert w.admin("PUT", "/v1/tenant/mfa", {"required": True}).json() == {"required": True}
    try:
        assert err(w.login(plain)) == (403, "forbidden", "mfa_enrollment")
        assert w.login(enrolled, later(totp)).status_code == 200
        # the agent without one can still enrol (with the password), then sign in
        totp2 = w.enrol(plain)
        assert w.login(plain, later(totp2)).status_code == 200
        # and cannot turn it off while required
        r = w.post("/v1/auth/mfa/disable", {"email": plain, "password": PASSWORD, "otp": w.codes[0]})
        assert err(r)[:2] == (403, "forbidden")
    finally:
        assert w.admin("PUT", "/v1/tenant/mfa", {"required": False}).status_code == 200
    r = w.post("/v1/auth/mfa/disable", {"email": plain, "password": PASSWORD, "otp": "000000"})
    assert err(r) == (401, "token_invalid", "otp")
    # (this step's code went to sign in: a recovery code turns it off)
    r = w.post("/v1/auth/mfa/disable", {"email": plain, "password": PASSWORD, "otp": w.codes[0]})
    assert r.json() == {"enabled": False}
    assert w.login(plain).status_code == 200


def test_the_admin_resets_an_agent_who_lost_the_authenticator(w: World) -> None:
    agent_id, email = w.new_agent()
    totp = w.enrol(email)
    token = w.login(email, later(totp)).json()["token"]
    with httpx.Client(base_url=w.srv.url, timeout=20, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/v1/conversations").status_code == 200
        assert err(w.admin("POST", f"/v1/agents/{agent_id}/mfa/reset", key=w.other_admin))[:2] == (404, "not_found")
        assert w.admin("POST", f"/v1/agents/{agent_id}/mfa/reset").json() == {"enabled": False}
        assert c.get("/v1/conversations").status_code == 401  # their sessions ended
    assert w.login(email).status_code == 200


def test_policy_routes_are_the_admins_and_the_secret_is_sealed(w: World) -> None:
    agent_id, email = w.new_agent()
    token = w.login(email).json()["token"]
    for method, path, body in (("GET", "/v1/tenant/mfa", None), ("PUT", "/v1/tenant/mfa", {"required": True}),
                               ("POST", f"/v1/agents/{agent_id}/mfa/reset", None)):
        with httpx.Client(base_url=w.srv.url, timeout=20, headers={"Authorization": f"Bearer {token}"}) as c:
            assert err(c.request(method, path, json=body))[:2] == (403, "forbidden")
    assert w.admin("GET", "/v1/tenant/mfa").json() == {"required": False}
    r = w.post("/v1/auth/mfa/enroll", {"email": email, "password": PASSWORD})
    secret = r.json()["secret"]

    async def raw() -> str:
        async with w.srv.app.state.db.session() as s:
            row = (await s.exec(select(type_coerce(Agent.totp_secret, Text))  # type: ignore[call-overload]
                                .where(Agent.id == agent_id))).one()
        return str(row)

    stored = w.srv.call(raw())
    assert stored and secret not in stored
