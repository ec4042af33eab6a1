"""Tokens: admin-minted JWTs, anonymous widget sessions, agent login."""

import secrets
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, post
from litestar.params import JSONBody
from sqlmodel import select

from server.auth import issue_token, verify_password
from server.errors import AuthError, BadInput
from server.models import Agent, Tenant, User
from server.ratelimit import Charge, client_ip, enforce, ip_key, tenant_key
from server.routes.deps import Auth, require

__all__ = ["auth_handlers"]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    sub: Name
    role: Literal["user", "agent"]
    name: Name | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=1)] | None = None


class WidgetSessionRequest(msgspec.Struct):
    widget_key: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    name: Name | None = None


class LoginRequest(msgspec.Struct):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    tenant_id: str | None = None


@post("/v1/tokens", status_code=201)
async def mint_token(request: Request[Any, Any, Any], principal: Auth, data: JSONBody[TokenRequest]) -> dict[str, Any]:
    require(principal, "admin")
    st = request.app.state
    ttl = data.ttl_s or st.settings.token_ttl_s
    if ttl > st.settings.max_token_ttl_s:
        raise BadInput(f"ttl_s must be at most {st.settings.max_token_ttl_s}", field="ttl_s")
    async with st.db.session() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        if data.role == "agent":
            agent = await s.get(Agent, data.sub)
            if agent is None or agent.tenant_id != principal.tenant_id:
                raise BadInput("no such agent in this tenant", field="sub")
    assert tenant is not None
    return {"token": issue_token(tenant, sub=data.sub, role=data.role, ttl_s=ttl, name=data.name),
            "expires_in": ttl}


@post("/v1/widget/session", status_code=201)
async def widget_session(request: Request[Any, Any, Any], data: JSONBody[WidgetSessionRequest]) -> dict[str, Any]:
    st = request.app.state
    limits = st.gateway.limits
    ip = client_ip(request.scope.get("client"), request.headers, st.settings.trusted_proxy_hops)
    # Per address before the key is even looked up, so guessing keys is paid for too.
    await enforce(st.limiter, Charge(limits.widget_sessions_ip, ip_key(ip)), detail="too many new sessions")
    async with st.db.write() as s:
        tenant = (await s.exec(select(Tenant).where(Tenant.widget_key == data.widget_key))).first()
        if tenant is None:
            raise AuthError("unknown widget key", code="token_invalid")
        await enforce(st.limiter, Charge(limits.widget_sessions_tenant, tenant_key(tenant.id)),
                      detail="too many new sessions for this site")
        user_id = "anon_" + secrets.token_urlsafe(12)
        s.add(User(tenant_id=tenant.id, external_id=user_id, name=data.name, anonymous=True))
    ttl = st.settings.widget_token_ttl_s
    return {"token": issue_token(tenant, sub=user_id, role="user", ttl_s=ttl, name=data.name or "Visitor"),
            "user_id": user_id, "tenant_id": tenant.id, "expires_in": ttl}


@post("/v1/auth/login", status_code=200)
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginRequest]) -> dict[str, Any]:
    st = request.app.state
    async with st.db.session() as s:
        q = select(Agent).where(Agent.email == data.email.lower())
        if data.tenant_id:
            q = q.where(Agent.tenant_id == data.tenant_id)
        agents = list((await s.exec(q)).all())
        match = next((a for a in agents if verify_password(a.password_hash, data.password)), None)
        if match is None:
            raise AuthError("wrong email or password", code="token_invalid")
        tenant = await s.get(Tenant, match.tenant_id)
    assert tenant is not None
    ttl = st.settings.token_ttl_s
    return {"token": issue_token(tenant, sub=match.id, role="agent", ttl_s=ttl, name=match.name),
            "agent_id": match.id, "tenant_id": tenant.id, "expires_in": ttl}


auth_handlers = [mint_token, widget_session, login]
