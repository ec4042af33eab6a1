"""Tokens: admin-minted JWTs, widget sessions (anonymous, or a user the business vouched for), agent login,
the tenant's token policy and identity-verification secret."""

import secrets
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post, put
from litestar.params import JSONBody
from sqlmodel import select

from server.accounts.auth import issue_token, max_token_ttl, token_limits
from server.accounts.identity import Claim, new_identity_secret, verify_identity
from server.accounts.login_guard import LoginGuard
from server.accounts.mfa import check_second_factor
from server.accounts.passwords import PasswordHashing
from server.api.deps import Auth, DbDep, GatewayDep, LimiterDep, LoginGuardDep, PasswordsDep, SettingsDep, require
from server.core.db import Database
from server.core.models import Agent, Tenant, User
from server.core.ratelimit import Charge, client_ip, enforce, ip_key, tenant_key
from server.core.settings import Settings
from server.errors import AuthError, BadInput, Forbidden

__all__ = ["agent_by_password", "auth_handlers", "second_factor"]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    sub: Name
    role: Literal["user", "agent"]
    name: Name | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=1)] | None = None


class WidgetSessionRequest(msgspec.Struct):
    widget_key: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    name: Name | None = None
    # who the visitor is, vouched for by the business's backend (server.accounts.identity)
    user_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    user_hash: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    user_jwt: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class LoginRequest(msgspec.Struct):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    tenant_id: str | None = None
    otp: Annotated[str, msgspec.Meta(max_length=32)] | None = None  # a TOTP or recovery code


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
        max_ttl = max_token_ttl(tenant, "user", token_limits(settings))
        who = verify_identity(Claim(data.user_id, data.user_hash, data.user_jwt), secret=tenant.identity_secret,
                              required=tenant.identity_verification_required, name=data.name, max_ttl_s=max_ttl)
        if who is None:
            user_id, name = "anon_" + secrets.token_urlsafe(12), data.name
            s.add(User(tenant_id=tenant.id, external_id=user_id, name=name, anonymous=True))
        else:
            user_id, name = who.user_id, who.name or data.name
            await _known_user(s, tenant.id, user_id, name)
    ttl = min(settings.widget_token_ttl_s, max_ttl)
    return {"token": issue_token(tenant, sub=user_id, role="user", ttl_s=ttl, name=name or "Visitor"),
            "user_id": user_id, "tenant_id": tenant.id, "expires_in": ttl,
            "identified": who is not None, "verified": who is not None and who.verified}


async def _known_user(s: Any, tenant_id: str, user_id: str, name: str | None) -> None:
    """The visitor the business vouched for: their user row, made on first sight."""
    user = (await s.exec(select(User).where(User.tenant_id == tenant_id, User.external_id == user_id))).first()
    if user is None:
        s.add(User(tenant_id=tenant_id, external_id=user_id, name=name))
    elif name and user.name != name:
        user.name = name
        s.add(user)


class IdentityPolicy(msgspec.Struct, forbid_unknown_fields=True):
    required: bool


@get("/v1/tenant/identity")
async def get_identity(principal: Auth, db: DbDep) -> dict[str, Any]:
    """The tenant's identity secret (made on first read) and whether verification is required (admins)."""
    require(principal, "admin")
    async with db.write() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        assert tenant is not None
        if tenant.identity_secret is None:
            tenant.identity_secret = new_identity_secret()
            s.add(tenant)
    return {"secret": tenant.identity_secret, "required": tenant.identity_verification_required}


@put("/v1/tenant/identity")
async def put_identity(principal: Auth, data: JSONBody[IdentityPolicy], db: DbDep) -> dict[str, Any]:
    """Require verification (an unsigned id gets an anonymous session), or not (admins)."""
    require(principal, "admin")
    async with db.write() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        assert tenant is not None
        tenant.identity_verification_required = data.required
        s.add(tenant)
    return {"required": data.required}


@post("/v1/tenant/identity/rotate", status_code=200)
async def rotate_identity(principal: Auth, db: DbDep) -> dict[str, Any]:
    """A new identity secret; hashes and JWTs made with the old one no longer identify anyone (admins)."""
    require(principal, "admin")
    async with db.write() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        assert tenant is not None
        tenant.identity_secret = new_identity_secret()
        s.add(tenant)
    return {"secret": tenant.identity_secret, "required": tenant.identity_verification_required}


async def agent_by_password(request: Request[Any, Any, Any], email: str, password: str, tenant_id: str | None,
                            db: Database, guard: LoginGuard, passwords: PasswordHashing) -> Agent:
    """The active agent with this email and password (the login guard counting failures), or ``AuthError``."""
    account = guard.account_key(email)
    guard.check(request.client.host if request.client else "unknown", account)
    async with db.session() as s:
        q = select(Agent).where(Agent.email == email.lower())
        if tenant_id:
            q = q.where(Agent.tenant_id == tenant_id)
        agents = list((await s.exec(q)).all())
    match = None
    active = [a for a in agents if a.active]
    for agent in active:
        if await passwords.verify(agent.password_hash, password):
            match = agent
            break
    if not active:
        # as slow as a wrong password for a known email: timing must not reveal which exist
        await passwords.verify_dummy(password)
    if match is None:
        guard.failed(account)
        raise AuthError("wrong email or password", code="token_invalid")
    return match


def second_factor(agent: Agent, code: str, guard: LoginGuard, email: str, *, secret: str | None = None) -> None:
    """``AuthError`` (counted as a failed sign-in) unless ``code`` is the agent's TOTP or recovery code."""
    if not check_second_factor(agent, code, secret=secret):
        guard.failed(guard.account_key(email))
        raise AuthError("wrong two-factor code", code="token_invalid", field="otp")


@post("/v1/auth/login", status_code=200)
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginRequest], db: DbDep, settings: SettingsDep,
                login_guard: LoginGuardDep, passwords: PasswordsDep) -> dict[str, Any]:
    """An agent signs in with email and password, and ``otp`` (an authenticator's code or a recovery code)
    once two-factor sign-in is on: 401 ``auth_required`` with ``field: "otp"`` asks for it."""
    found = await agent_by_password(request, data.email, data.password, data.tenant_id, db, login_guard, passwords)
    async with db.write() as s:
        match = await s.get(Agent, found.id)
        tenant = await s.get(Tenant, found.tenant_id)
        assert match is not None and tenant is not None
        if match.totp_enabled:
            if not data.otp:
                raise AuthError("a two-factor code is needed", code="auth_required", field="otp")
            second_factor(match, data.otp, login_guard, data.email)
            s.add(match)
        elif tenant.mfa_required:
            raise Forbidden("this organisation requires two-factor sign-in: set up an authenticator first",
                            field="mfa_enrollment")
    login_guard.succeeded(login_guard.account_key(data.email))
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


auth_handlers = [mint_token, widget_session, login, revoke_tokens, put_token_policy, get_identity, put_identity,
                 rotate_identity]
