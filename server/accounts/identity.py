"""Identity verification for the widget (issue 13 item 4): the business's backend vouches for who the
visitor is, so a known user's history is only ever read by that user.

Two ways, both with the tenant's identity secret (its own, not the token-signing secret: it can only
assert end users' ids, never mint an agent's or an admin's token):
- ``user_id`` with ``user_hash`` = hex HMAC-SHA256(identity secret, user_id), as Intercom's and
  Crisp's identity verification do;
- ``user_jwt``: an HS256 JWT the backend mints with that secret (``sub`` the user id, ``exp`` required,
  ``name`` optional), no longer-lived than the tenant's user-token limit.

With verification required (the tenant's setting, on by default), an identity that is unsigned or
wrongly signed gets an anonymous session only. With it off (a site in development), an unsigned
``user_id`` is taken as it is, and the session says ``verified: false``.
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

from server.errors import BadInput

__all__ = ["Claim", "Identity", "new_identity_secret", "user_hash", "verify_identity"]

_ANON_PREFIX = "anon_"
_MAX_USER_ID = 200


def new_identity_secret() -> str:
    return "pk_ident_" + secrets.token_urlsafe(32)


def user_hash(secret: str, user_id: str) -> str:
    """What the business's backend computes for a user id: hex HMAC-SHA256."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What the widget sent about who the visitor is."""

    user_id: str | None = None
    user_hash: str | None = None
    user_jwt: str | None = None

    @property
    def present(self) -> bool:
        return self.user_id is not None or self.user_jwt is not None


@dataclass(frozen=True)
class Identity:
    user_id: str
    name: str | None
    verified: bool


def _check_id(user_id: str) -> str:
    if not user_id or len(user_id) > _MAX_USER_ID or not user_id.isprintable() or user_id != user_id.strip():
        raise BadInput(f"user_id must be 1-{_MAX_USER_ID} printable characters", field="user_id")
    if user_id.startswith(_ANON_PREFIX):
        raise BadInput(f"user_id must not start with {_ANON_PREFIX!r} (the anonymous sessions' ids)",
                       field="user_id")
    return user_id


def _from_jwt(secret: str, token: str, max_ttl_s: int) -> Identity | None:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.PyJWTError:
        return None
    sub, exp, iat = claims.get("sub"), claims.get("exp"), claims.get("iat", time.time())
    if not isinstance(sub, str) or not isinstance(exp, int | float) or not isinstance(iat, int | float):
        return None
    if exp - iat > max_ttl_s or exp - time.time() > max_ttl_s:
        return None  # longer-lived than the tenant allows for user tokens
    name = claims.get("name")
    return Identity(_check_id(sub), name if isinstance(name, str) else None, verified=True)


def verify_identity(claim: Claim, *, secret: str | None, required: bool, name: str | None,
                    max_ttl_s: int) -> Identity | None:
    """The identity a widget session may carry, or None for an anonymous one."""
    if not claim.present:
        return None
    if claim.user_jwt is not None:
        return _from_jwt(secret, claim.user_jwt, max_ttl_s) if secret else None
    assert claim.user_id is not None
    user_id = _check_id(claim.user_id)
    if secret and claim.user_hash is not None and hmac.compare_digest(
            user_hash(secret, user_id), claim.user_hash.strip().lower()):
        return Identity(user_id, name, verified=True)
    if required:
        return None
    return Identity(user_id, name, verified=False)
