"""Tokens: admin-minted JWTs, anonymous widget sessions, agent login."""

import secrets
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, post, put
from litestar.params import JSONBody
from sqlmodel import select

from server.accounts.auth import issue_token, max_token_ttl, token_limits
from server.api.deps import Auth, DbDep, GatewayDep, LimiterDep, LoginGuardDep, PasswordsDep, SettingsDep, require
from server.core.models import Agent, Tenant, User
from server.core.ratelimit import Charge, client_ip, enforce, ip_key, tenant_key
from server.core.settings import Settings
from server.errors import AuthError, BadInput

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
async def mint_token(principal: Auth, data: JSONBody[TokenRequest], db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.session() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        agent = await s.get(Agent, data.sub) if data.role == "agent" else None
        if data.role == "agent" and (agent is None or agent.tenant_id != principal.tenant_id or not agent.active):
            raise BadInput("no such active agent in this tenant", field="sub")
    assert tenant is not None
    cap = min(settings.max_token_ttl_s, max_token_ttl(tenant, data.role, token_limits(settings)))
    ttl = data.ttl_s or min(settings.token_ttl_s, cap)
    if ttl > cap:
        raise BadInput(f"ttl_s must be at most {cap}", field="ttl_s")
    return {"token": issue_token(tenant, sub=data.sub, role=data.role, ttl_s=ttl, name=data.name,
                                 agent_version=agent.token_version if agent else None),
            "expires_in": ttl}


@post("/v1/widget/session", status_code=201)
async def widget_session(request: Request[Any, Any, Any], data: JSONBody[WidgetSessionRequest], db: DbDep,
                         settings: SettingsDep, gateway: GatewayDep, limiter: LimiterDep) -> dict[str, Any]:
    limits = gateway.limits
    ip = client_ip(request.scope.get("client"), request.headers, settings.trusted_proxy_hops)
    # Per address before the key is even looked up, so guessing keys is paid for too.
    await enforce(limiter, Charge(limits.widget_sessions_ip, ip_key(ip)), detail="too many new sessions")
    async with db.write() as s:
        tenant = (await s.exec(select(Tenant).where(Tenant.widget_key == data.widget_key))).first()
        if tenant is None:
            raise AuthError("unknown widget key", code="token_invalid")
        await enforce(limiter, Charge(limits.widget_sessions_tenant, tenant_key(tenant.id)),
                      detail="too many new sessions for this site")
        user_id = "anon_" + secrets.token_urlsafe(12)
        s.add(User(tenant_id=tenant.id, external_id=user_id, name=data.name, anonymous=True))
    ttl = min(settings.widget_token_ttl_s, max_token_ttl(tenant, "user", token_limits(settings)))
    return {"token": issue_token(tenant, sub=user_id, role="user", ttl_s=ttl, name=data.name or "Visitor"),
            "user_id": user_id, "tenant_id": tenant.id, "expires_in": ttl}


@post("/v1/auth/login", status_code=200)
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginRequest], db: DbDep, settings: SettingsDep,
                login_guard: LoginGuardDep, passwords: PasswordsDep) -> dict[str, Any]:
    guard = login_guard
    account = guard.account_key(data.email)
    guard.check(request.client.host if request.client else "unknown", account)
    async with db.session() as s:
        q = select(Agent).where(Agent.email == data.email.lower())
        if data.tenant_id:
            q = q.where(Agent.tenant_id == data.tenant_id)
        agents = list((await s.exec(q)).all())
    match = None
    active = [a for a in agents if a.active]
    for agent in active:
        if await passwords.verify(agent.password_hash, data.password):
            match = agent
            break
    if not active:
        # as slow as a wrong password for a known email: timing must not reveal which exist
        await passwords.verify_dummy(data.password)
    if match is None:
        guard.failed(account)
        raise AuthError("wrong email or password", code="token_invalid")
    guard.succeeded(account)
    async with db.session() as s:
        tenant = await s.get(Tenant, match.tenant_id)
    assert tenant is not None
    ttl = min(settings.token_ttl_s, max_token_ttl(tenant, "agent", token_limits(settings)))
    return {"token": issue_token(tenant, sub=match.id, role="agent", ttl_s=ttl, name=match.name,
                                 agent_version=match.token_version),
            "agent_id": match.id, "tenant_id": tenant.id, "expires_in": ttl}


class TokenPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """Longest token lifetimes for this tenant, in seconds; null: the server's default."""

    user_max_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=365 * 24 * 3600)] | None = None
    agent_max_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=365 * 24 * 3600)] | None = None


def _policy(tenant: Tenant, settings: Settings) -> dict[str, Any]:
    limits = token_limits(settings)
    return {"key_version": tenant.key_version,
            "user_max_ttl_s": max_token_ttl(tenant, "user", limits),
            "agent_max_ttl_s": max_token_ttl(tenant, "agent", limits)}


@post("/v1/tenant/tokens/revoke", status_code=200)
async def revoke_tokens(principal: Auth, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Void every token issued so far for this tenant (users and agents): the key version goes up
    and tokens carrying an older ``kv`` are refused as ``token_invalid``. Admin keys stay valid."""
    require(principal, "admin")
    async with db.write() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        assert tenant is not None
        tenant.key_version += 1
        s.add(tenant)
    return _policy(tenant, settings)


@put("/v1/tenant/token-policy")
async def put_token_policy(principal: Auth, data: JSONBody[TokenPolicy], db: DbDep,
                           settings: SettingsDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.write() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        assert tenant is not None
        tenant.user_token_max_ttl_s, tenant.agent_token_max_ttl_s = data.user_max_ttl_s, data.agent_max_ttl_s
        s.add(tenant)
    return _policy(tenant, settings)


auth_handlers = [mint_token, widget_session, login, revoke_tokens, put_token_policy]
