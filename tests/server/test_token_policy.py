"""Token lifetimes are capped per tenant and role, and an admin can revoke every token of the
tenant at once (the ``kv`` claim against the tenant's key version)."""

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from sqlmodel import select

from server.accounts.tenants import create_tenant
from server.core.db import Database
from server.core.models import Tenant
from tests.support.inproc import InProcServer, make_settings
from tests.support.ws import WsClient

DAY = 24 * 3600


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    with InProcServer(make_settings(tmp_path_factory.mktemp("tokens"))) as server:
        yield server


def _tenant(srv: InProcServer) -> Tenant:
    async def get() -> Tenant:
        db: Database = srv.app.state.db
        async with db.session() as s:
            return (await s.exec(select(Tenant).where(Tenant.name == "Demo"))).one()

    tenant: Tenant = srv.call(get())
    return tenant


def _self_minted(srv: InProcServer, *, role: str = "user", sub: str = "alice", **claims: Any) -> str:
    tenant = _tenant(srv)
    now = int(time.time())
    body = {"sub": sub, "tid": tenant.id, "role": role, "iat": now, "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, tenant.signing_secret, algorithm="HS256")


def _status(srv: InProcServer, token: str) -> tuple[int, str | None]:
    r = httpx.get(srv.url + "/v1/conversations", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return r.status_code, (r.json().get("error") or {}).get("code") if r.status_code != 200 else None


def test_a_token_that_never_expires_is_refused(srv: InProcServer) -> None:
    assert _status(srv, _self_minted(srv)) == (200, None)
    assert _status(srv, _self_minted(srv, exp=253402300799)) == (401, "token_invalid")  # year 9999
    assert _status(srv, _self_minted(srv, exp=253402300799, iat=None)) == (401, "token_invalid")
    # iat in the future does not stretch a long exp
    assert _status(srv, _self_minted(srv, iat=253402300000, exp=253402300799)) == (401, "token_invalid")


def test_lifetime_caps_by_role(srv: InProcServer) -> None:
    now = int(time.time())
    agent_id, _ = srv.agent("Capped", "capped@x.io")
    assert _status(srv, _self_minted(srv, exp=now + 6 * DAY))[0] == 200
    assert _status(srv, _self_minted(srv, exp=now + 8 * DAY)) == (401, "token_invalid")
    assert _status(srv, _self_minted(srv, role="agent", sub=agent_id, exp=now + 11 * 3600))[0] == 200
    assert _status(srv, _self_minted(srv, role="agent", sub=agent_id, exp=now + 13 * 3600)) == (401, "token_invalid")


def test_a_tenant_sets_its_own_caps(srv: InProcServer) -> None:
    with srv.admin() as c:
        r = c.put("/v1/tenant/token-policy", json={"user_max_ttl_s": 3600})
        assert r.status_code == 200, r.text
        assert r.json()["user_max_ttl_s"] == 3600
        try:
            now = int(time.time())
            assert _status(srv, _self_minted(srv, exp=now + 2 * 3600)) == (401, "token_invalid")
            assert _status(srv, _self_minted(srv, exp=now + 1800))[0] == 200
            r = c.post("/v1/tokens", json={"sub": "bob", "role": "user", "ttl_s": 7200})
            assert r.status_code == 422 and r.json()["error"]["field"] == "ttl_s"
        finally:
            c.put("/v1/tenant/token-policy", json={}).raise_for_status()


async def test_revoke_voids_every_issued_token_on_rest_and_socket(srv: InProcServer) -> None:
    minted = srv.token("carol")
    _, agent_token = srv.agent("Revoked", "revoked@x.io")
    session = httpx.post(srv.url + "/v1/widget/session", json={"widget_key": _tenant(srv).widget_key},
                         timeout=10).json()["token"]
    self_minted = _self_minted(srv, sub="dave")
    tokens = [minted, agent_token, session, self_minted]
    assert [_status(srv, t)[0] for t in tokens] == [200] * 4
    before = await WsClient.connect(srv.ws_url, minted)  # hello accepted before the revoke
    await before.ws.close()

    with srv.admin() as c:
        r = c.post("/v1/tenant/tokens/revoke")
        assert r.status_code == 200, r.text
        kv = r.json()["key_version"]
        assert kv >= 2
        assert c.get("/v1/bots").status_code == 200  # the admin key is not a token: it still works

    assert [_status(srv, t) for t in tokens] == [(401, "token_invalid")] * 4
    ws = await WsClient.connect(srv.ws_url)
    await ws.send({"type": "hello", "token": minted})
    err = await ws.expect("error")
    assert err["code"] == "token_invalid"
    await ws.ws.close()

    fresh = srv.token("carol")
    assert jwt.decode(fresh, options={"verify_signature": False})["kv"] == kv
    assert _status(srv, fresh)[0] == 200
    assert _status(srv, _self_minted(srv, sub="dave", kv=kv))[0] == 200


def test_only_admins_revoke(srv: InProcServer) -> None:
    user = srv.token("eve")
    for path, method in (("/v1/tenant/tokens/revoke", "POST"), ("/v1/tenant/token-policy", "PUT")):
        r = httpx.request(method, srv.url + path, headers={"Authorization": f"Bearer {user}"}, json={}, timeout=10)
        assert r.status_code == 403
    assert _status(srv, user)[0] == 200


def _login(srv: InProcServer, email: str, password: str) -> httpx.Response:
    return httpx.post(srv.url + "/v1/auth/login", json={"email": email, "password": password}, timeout=30)


def test_deactivating_an_agent_voids_its_tokens_and_its_login(srv: InProcServer) -> None:
    agent_id, minted = srv.agent("Leaver", "leaver@x.io")
    logged_in = _login(srv, "leaver@x.io", "correct horse battery").json()["token"]
    assert [_status(srv, t)[0] for t in (minted, logged_in)] == [200, 200]
    with srv.admin() as c:
        r = c.post(f"/v1/agents/{agent_id}/deactivate")
        assert r.status_code == 200 and r.json()["active"] is False
        assert [_status(srv, t) for t in (minted, logged_in)] == [(401, "token_invalid")] * 2
        # a self-minted token for the deactivated agent is refused as well
        assert _status(srv, _self_minted(srv, role="agent", sub=agent_id, akv=2)) == (401, "token_invalid")
        assert _login(srv, "leaver@x.io", "correct horse battery").status_code == 401
        assert c.post("/v1/tokens", json={"sub": agent_id, "role": "agent"}).status_code == 422
        assert c.post(f"/v1/agents/{agent_id}/activate").json()["active"] is True
    again = _login(srv, "leaver@x.io", "correct horse battery")
    assert again.status_code == 200 and _status(srv, again.json()["token"])[0] == 200
    assert _status(srv, minted) == (401, "token_invalid")  # reactivating does not revive old tokens


def test_a_password_reset_voids_the_agents_tokens(srv: InProcServer) -> None:
    agent_id, minted = srv.agent("Forgetful", "forgetful@x.io")
    other_id, other = srv.agent("Bystander", "bystander@x.io")
    with srv.admin() as c:
        weak = c.post(f"/v1/agents/{agent_id}/password", json={"password": "forgetful"})
        assert weak.status_code == 422 and weak.json()["error"]["field"] == "password"
        assert _status(srv, minted)[0] == 200  # a refused reset changes nothing
        assert c.post(f"/v1/agents/{agent_id}/password", json={"password": "new staple battery"}).status_code == 200
        assert c.post("/v1/agents/nope/password", json={"password": "new staple battery"}).status_code == 404
    assert _status(srv, minted) == (401, "token_invalid")
    assert _status(srv, other)[0] == 200  # only that agent's tokens
    assert _login(srv, "forgetful@x.io", "correct horse battery").status_code == 401
    fresh = _login(srv, "forgetful@x.io", "new staple battery")
    assert fresh.status_code == 200 and _status(srv, fresh.json()["token"])[0] == 200
    assert other_id != agent_id


def test_agent_account_routes_are_for_the_tenants_admin_only(srv: InProcServer) -> None:
    agent_id, agent_token = srv.agent("Guarded", "guarded@x.io")
    user = srv.token("mallory")
    routes = [(f"/v1/agents/{agent_id}/{what}", body) for what, body in
              (("password", {"password": "another staple battery"}), ("deactivate", None), ("activate", None))]
    for path, body in routes:
        for token in (user, agent_token):
            r = httpx.post(srv.url + path, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=10)
            assert r.status_code == 403, (path, r.text)
        assert httpx.post(srv.url + path, json=body, timeout=10).status_code == 401
    other = srv.call(create_tenant(srv.app.state.db, "Other"))
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {other.admin_key}"}, timeout=10) as c:
        for path, body in routes:
            assert c.post(path, json=body).status_code == 404  # another tenant's agent is not found
    assert _status(srv, agent_token)[0] == 200
