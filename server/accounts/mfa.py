"""Two-factor sign-in for agents (issue 13 item 5): TOTP (RFC 6238, ``pyotp``) with one-time recovery
codes, enforced per tenant.

An agent enrols with their password (``/v1/auth/mfa/enroll`` then ``/confirm`` with a first code), so a
tenant that requires two factors can still let its agents in to enrol. A code is accepted within one
30-second step either side of now and never twice (the last step used is kept); a recovery code works
once. The secret is sealed at rest; recovery codes are kept as SHA-256 hashes (they are random, 50 bits
each: a slow hash adds nothing).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import pyotp

from server.core.models import Agent

__all__ = ["RECOVERY_CODES", "Enrolment", "check_second_factor", "enrolment", "new_recovery_codes"]

RECOVERY_CODES = 10
_STEP_S = 30
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str  # otpauth://… for an authenticator app's QR code


def enrolment(email: str, issuer: str) -> Enrolment:
    secret = pyotp.random_base32()
    return Enrolment(secret, pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer))


def _hash(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").strip().lower().encode()).hexdigest()


def new_recovery_codes() -> tuple[list[str], list[str]]:
    """(codes shown once, their hashes kept)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(raw[:5] + "-" + raw[5:])
    return codes, [_hash(c) for c in codes]


def _totp_step(secret: str, code: str, last_step: int, now: float) -> int | None:
    """The step ``code`` is valid for (now, or one step either side), if not already used."""
    code = code.replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now // _STEP_S)
    for candidate in (step, step - 1, step + 1):
        if candidate > last_step and hmac.compare_digest(totp.at(candidate * _STEP_S), code):
            return candidate
    return None


def check_second_factor(agent: Agent, code: str, *, secret: str | None = None, now: float | None = None) -> bool:
    """Check a TOTP or recovery code for ``agent`` and record its use on the row (the caller commits).
    ``secret``: the pending secret while enrolling (else the agent's own)."""
    key = secret or agent.totp_secret
    if not key:
        return False
    step = _totp_step(key, code, agent.totp_last_step, time.time() if now is None else now)
    if step is not None:
        agent.totp_last_step = step
        return True
    if secret is None:
        hashed = _hash(code)
        left = [h for h in agent.recovery_codes if not hmac.compare_digest(h, hashed)]
        if len(left) < len(agent.recovery_codes):
            agent.recovery_codes = left
            return True
    return False
