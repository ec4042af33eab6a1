"""Parley's error tree, and the one place that maps it onto HTTP statuses and WebSocket frames.

    ParleyError (code, detail)
    ├── AuthError            auth_required, auth_timeout, token_invalid, token_expired   -> 401
    ├── Forbidden            forbidden                                                  -> 403
    ├── NotFound             not_found                                                  -> 404
    ├── BadInput             bad_frame, unknown_type, validation_failed, empty_message  -> 400 / 422
    │   └── TooLong          too_long                                                   -> 413
    ├── Conflict             idempotency_key_reused, invalid_cursor, resync_required    -> 409
    ├── RateLimited          rate_limited, connection_limit (retry_after_ms)            -> 429
    ├── Unavailable          unavailable (retry_after_ms)                               -> 503
    └── (anything else)      internal                                                   -> 500

Errors of the ``knowledge`` and ``bots`` packages carry the same ``code`` attribute and are
mapped here by code.
"""

from typing import Any

__all__ = [
    "AuthError",
    "BadInput",
    "Conflict",
    "Forbidden",
    "NotFound",
    "ParleyError",
    "RateLimited",
    "TooLong",
    "Unavailable",
    "error_body",
    "status_for_code",
]


class ParleyError(Exception):
    code = "internal"
    status = 500

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        retry_after_ms: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.retry_after_ms = retry_after_ms
        self.field = field


class AuthError(ParleyError):
    code = "auth_required"
    status = 401


class Forbidden(ParleyError):
    code = "forbidden"
    status = 403


class NotFound(ParleyError):
    code = "not_found"
    status = 404

    def __init__(self, detail: str = "not found", **kw: Any) -> None:
        super().__init__(detail, **kw)


class BadInput(ParleyError):
    code = "validation_failed"
    status = 422


class TooLong(BadInput):
    code = "too_long"
    status = 413


class Conflict(ParleyError):
    code = "idempotency_key_reused"
    status = 409


class RateLimited(ParleyError):
    code = "rate_limited"
    status = 429


class Unavailable(ParleyError):
    code = "unavailable"
    status = 503


_STATUS_BY_CODE = {
    "auth_required": 401,
    "auth_timeout": 401,
    "token_invalid": 401,
    "token_expired": 401,
    "forbidden": 403,
    "not_found": 404,
    "bad_frame": 400,
    "unknown_type": 400,
    "validation_failed": 422,
    "empty_message": 422,
    "too_long": 413,
    "unsupported_media_type": 415,
    "idempotency_key_reused": 409,
    "invalid_cursor": 409,
    "resync_required": 409,
    "model_mismatch": 409,
    "rate_limited": 429,
    "connection_limit": 429,
    "slow_consumer": 429,
    "unavailable": 503,
    "internal": 500,
}


def status_for_code(code: str) -> int:
    return _STATUS_BY_CODE.get(code, 500)


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "detail": detail}
    err.update({k: v for k, v in extra.items() if v is not None})
    return {"error": err}
