"""Who is calling: admin keys (stored as SHA-256 of a high-entropy key), per-tenant HS256 JWTs
for end users and agents, anonymous widget sessions, agent passwords (argon2, in server.passwords)."""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from sqlmodel import select

from server.db import Database
from server.errors import AuthError
from server.models import Tenant

__all__ = [
    "Principal",
    "authenticate_bearer",
    "hash_admin_key",
    "issue_token",
    "new_admin_key",
    "new_signing_secret",
    "new_widget_key",
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
                name: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "tid": tenant.id, "role": role, "iat": now, "exp": now + ttl_s}
    if name:
        claims["name"] = name
    return jwt.encode(claims, tenant.signing_secret, algorithm="HS256")


async def verify_token(db: Database, token: str) -> Principal:
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
            leeway=5,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("token signature invalid", code="token_invalid") from exc
    role, sub, name = claims.get("role"), claims.get("sub"), claims.get("name")
    if role not in ("user", "agent") or not isinstance(sub, str) or not sub or len(sub) > 200:
        raise AuthError("token claims invalid", code="token_invalid")
    if name is not None and not isinstance(name, str):
        name = None
    return Principal(tenant_id=tenant.id, role=role, id=sub, name=name)


async def authenticate_bearer(db: Database, authorization: str | None) -> Principal:
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
    return await verify_token(db, credential)
