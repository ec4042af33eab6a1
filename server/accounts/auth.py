"""Who is calling: admin keys (stored as SHA-256 of a high-entropy key), per-tenant HS256 JWTs
for end users and agents, anonymous widget sessions, agent passwords (argon2, in server.accounts.passwords)."""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from sqlmodel import select

from server.core.db import Database
from server.core.models import Agent, Tenant
from server.core.settings import Settings
from server.errors import AuthError

__all__ = [
    "Principal",
    "TokenLimits",
    "authenticate_bearer",
    "hash_admin_key",
    "issue_token",
    "max_token_ttl",
    "new_admin_key",
    "new_signing_secret",
    "new_widget_key",
    "token_limits",
    "verify_token",
]

Role = Literal["admin", "user", "agent"]
_ADMIN_PREFIX = "pk_admin_"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    role: Role
    id: str
    name: str | None = None

    @property
    def sender_kind(self) -> str:
        return "agent" if self.role == "agent" else "user"


def new_admin_key() -> str:
    return _ADMIN_PREFIX + secrets.token_urlsafe(32)


def new_widget_key() -> str:
    return "pk_widget_" + secrets.token_urlsafe(18)


def new_signing_secret() -> str:
    return secrets.token_urlsafe(48)


def hash_admin_key(key: str) -> str:
    # Keys carry 256 bits of entropy, so a fast hash is enough and allows an indexed lookup.
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(tenant: Tenant, *, sub: str, role: Literal["user", "agent"], ttl_s: int,
                name: str | None = None, agent_version: int | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "tid": tenant.id, "role": role, "iat": now, "exp": now + ttl_s,
                              "kv": tenant.key_version}
    if name:
        claims["name"] = name
    if agent_version is not None:
        claims["akv"] = agent_version
    return jwt.encode(claims, tenant.signing_secret, algorithm="HS256")


def max_token_ttl(tenant: Tenant, role: str, defaults: "TokenLimits") -> int:
    """The longest lifetime a token of this role may have in this tenant."""
    if role == "agent":
        return tenant.agent_token_max_ttl_s or defaults.agent_max_ttl_s
    return tenant.user_token_max_ttl_s or defaults.user_max_ttl_s


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """Server-wide caps on token lifetimes; a tenant's own (Tenant.*_token_max_ttl_s) win."""

    user_max_ttl_s: int = 7 * 24 * 3600
    agent_max_ttl_s: int = 12 * 3600


def token_limits(settings: Settings) -> TokenLimits:
    return TokenLimits(settings.user_token_max_ttl_s, settings.agent_token_max_ttl_s)


_LEEWAY_S = 5


async def verify_token(db: Database, token: str, limits: TokenLimits | None = None) -> Principal:
    limits = limits or TokenLimits()
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError("malformed token", code="token_invalid") from exc
    if header.get("alg") != "HS256":
        raise AuthError("token must be signed with HS256", code="token_invalid")
    tid = unverified.get("tid")
    if not isinstance(tid, str) or len(tid) > 64:
        raise AuthError("token has no tenant", code="token_invalid")
    async with db.session() as s:
        tenant = await s.get(Tenant, tid)
    if tenant is None:
        raise AuthError("token signature invalid", code="token_invalid")
    try:
        claims = jwt.decode(
            token,
            tenant.signing_secret,
            algorithms=["HS256"],
            options={"require": ["exp", "sub", "tid", "role"]},
            leeway=_LEEWAY_S,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("token signature invalid", code="token_invalid") from exc
    role, sub, name = claims.get("role"), claims.get("sub"), claims.get("name")
    if role not in ("user", "agent") or not isinstance(sub, str) or not sub or len(sub) > 200:
        raise AuthError("token claims invalid", code="token_invalid")
    _check_lifetime(claims, max_token_ttl(tenant, role, limits))
    # tokens minted before the tenant's key version was raised are revoked; no kv means 1
    if not _version_matches(claims.get("kv", 1), tenant.key_version):
        raise AuthError("token revoked", code="token_invalid")
    if role == "agent":
        async with db.session() as s:
            agent = await s.get(Agent, sub)
        if agent is None or agent.tenant_id != tenant.id or not agent.active:
            raise AuthError("no such active agent", code="token_invalid")
        if not _version_matches(claims.get("akv", 1), agent.token_version):
            raise AuthError("token revoked", code="token_invalid")
    if name is not None and not isinstance(name, str):
        name = None
    return Principal(tenant_id=tenant.id, role=role, id=sub, name=name)


def _version_matches(claimed: Any, current: int) -> bool:
    return isinstance(claimed, int) and not isinstance(claimed, bool) and claimed == current


def _check_lifetime(claims: dict[str, Any], cap_s: int) -> None:
    """A leaked token must not work for ever: refuse any whose lifetime exceeds the cap, from its
    issue time and from now (an ``iat`` set in the future does not stretch it)."""
    exp, iat, now = claims["exp"], claims.get("iat"), time.time()
    if not isinstance(exp, int | float) or exp - now > cap_s + _LEEWAY_S:
        raise AuthError(f"token lifetime exceeds {cap_s} s", code="token_invalid")
    if iat is not None:
        if not isinstance(iat, int | float) or iat > now + _LEEWAY_S:
            raise AuthError("token issued in the future", code="token_invalid")
        if exp - iat > cap_s + _LEEWAY_S:
            raise AuthError(f"token lifetime exceeds {cap_s} s", code="token_invalid")


async def authenticate_bearer(db: Database, authorization: str | None,
                              limits: TokenLimits | None = None) -> Principal:
    if not authorization:
        raise AuthError("missing Authorization header", code="auth_required")
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'", code="auth_required")
    credential = credential.strip()
    if credential.startswith(_ADMIN_PREFIX):
        digest = hash_admin_key(credential)
        async with db.session() as s:
            tenant = (await s.exec(select(Tenant).where(Tenant.admin_key_hash == digest))).first()
        if tenant is None or not hmac.compare_digest(tenant.admin_key_hash, digest):
            raise AuthError("unknown admin key", code="token_invalid")
        return Principal(tenant_id=tenant.id, role="admin", id="admin", name=tenant.name)
    return await verify_token(db, credential, limits)
