"""Parley's error tree, and the one place that maps every package's errors onto HTTP statuses,
``error`` frames and WebSocket close codes.

    ParleyError (code, detail)
    ├── AuthError            auth_required, auth_timeout, token_invalid, token_expired   -> 401
    ├── Forbidden            forbidden                                                  -> 403
    ├── NotFound             not_found                                                  -> 404
    ├── BadInput             bad_frame, unknown_type, validation_failed, empty_message  -> 400 / 422
    │   └── TooLong          too_long                                                   -> 413
    ├── Conflict             idempotency_key_reused, invalid_cursor, resync_required,   -> 409
    │                        edit_window_closed, message_deleted, at_capacity, not_rateable
    ├── RateLimited          rate_limited, connection_limit (retry_after_ms)            -> 429
    ├── Unavailable          unavailable (retry_after_ms)                               -> 503
    └── (anything else)      internal                                                   -> 500

``knowledge.errors.KnowledgeError`` and ``bots.errors.BotError`` (and their subclasses) are
translated at this boundary by :data:`FOREIGN_CODES`, one entry per class, into a code of
:data:`CODES`; :func:`as_parley` is that translation, used by the REST exception handlers
(:func:`exception_handlers`) and by the WebSocket gateway. :data:`CODES` is the only table of
statuses and close codes: a code's HTTP status, and the close code a session ends with after a
fatal ``error``/``bye`` frame of that code, are read nowhere else.
"""

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException

from bots.errors import (
    BotError,
    CircuitOpenError,
    ConfigError,
    LLMConnectionError,
    LLMContextTooLong,
    LLMError,
    LLMProtocolError,
    LLMRateLimited,
    LLMRejected,
    LLMTimeout,
    LLMUnavailable,
    RetrievalError,
)
from knowledge.errors import (
    DecompressionBomb,
    DocumentTooLarge,
    EmbeddingFailed,
    FetchFailed,
    KnowledgeBaseExists,
    KnowledgeBaseNotFound,
    KnowledgeError,
    ModelMismatch,
    ParseFailed,
    UnsafeURL,
    UnsupportedFormat,
)

__all__ = [
    "CLIENT_ERRORS",
    "CODES",
    "FOREIGN_CODES",
    "AuthError",
    "BadInput",
    "Code",
    "Conflict",
    "Forbidden",
    "NotFound",
    "NotRateable",
    "ParleyError",
    "RateLimited",
    "TooLong",
    "Unavailable",
    "as_parley",
    "close_code_for",
    "error_body",
    "exception_handlers",
    "status_for_code",
]

log = logging.getLogger("parley")


@dataclass(frozen=True)
class Code:
    """What one error code means on each transport."""

    status: int  # the HTTP status of a REST answer with this code
    close: int = 1008  # the WebSocket close code after a fatal error/bye frame with this code (policy violation)


#: Every code Parley answers with (PROTOCOL.md "Error codes", plus ``unsupported_media_type``,
#: the 415 answer of REST, and ``shutdown``, a ``bye`` code only). One row per code.
CODES: dict[str, Code] = {
    "auth_required": Code(401, 4001),
    "auth_timeout": Code(401, 4001),
    "token_invalid": Code(401, 4001),
    "token_expired": Code(401, 4001),
    "forbidden": Code(403, 4003),
    "not_found": Code(404),
    "bad_frame": Code(400, 1003),
    "unknown_type": Code(400),
    "validation_failed": Code(422),
    "empty_message": Code(422),
    "too_long": Code(413),
    "unsupported_media_type": Code(415),
    "idempotency_key_reused": Code(409),
    "invalid_cursor": Code(409),
    "not_rateable": Code(409),
    "at_capacity": Code(409),  # a transfer to an agent (or team) with no free capacity
    "resync_required": Code(409),
    "edit_window_closed": Code(409),
    "message_deleted": Code(409),
    "rate_limited": Code(429, 4029),
    "connection_limit": Code(429, 4029),
    "slow_consumer": Code(429, 4008),
    "unavailable": Code(503, 1013),
    "shutdown": Code(503, 1001),
    "internal": Code(500, 1011),
}


class ParleyError(Exception):
    code = "internal"

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

    @property
    def status(self) -> int:
        """The HTTP status of this error's code (:data:`CODES`)."""
        return status_for_code(self.code)


class AuthError(ParleyError):
    code = "auth_required"


class Forbidden(ParleyError):
    code = "forbidden"


class NotFound(ParleyError):
    code = "not_found"

    def __init__(self, detail: str = "not found", **kw: Any) -> None:
        super().__init__(detail, **kw)


class BadInput(ParleyError):
    code = "validation_failed"


class TooLong(BadInput):
    code = "too_long"


class Conflict(ParleyError):
    code = "idempotency_key_reused"


class NotRateable(ParleyError):
    """A conversation is rated once it is resolved, or once the AI agent has answered in it."""

    code = "not_rateable"


class RateLimited(ParleyError):
    code = "rate_limited"


class Unavailable(ParleyError):
    code = "unavailable"


#: The code each error class of ``knowledge`` and ``bots`` reaches a client with: one entry per
#: class (tests/server/test_errors.py fails on a class without one). A knowledge error's own
#: ``code`` is already a protocol code and must agree; the AI agent's failures (provider down,
#: slow, rate limited, refusing, our prompt too long, the breaker open) are all "the agent is
#: unavailable" to a client, except a configuration the client sent that does not validate.
FOREIGN_CODES: dict[type, str] = {
    KnowledgeError: "validation_failed",
    UnsupportedFormat: "validation_failed",
    UnsafeURL: "validation_failed",
    FetchFailed: "validation_failed",
    DocumentTooLarge: "too_long",
    ParseFailed: "validation_failed",
    DecompressionBomb: "validation_failed",
    EmbeddingFailed: "unavailable",
    ModelMismatch: "validation_failed",
    KnowledgeBaseNotFound: "not_found",
    KnowledgeBaseExists: "validation_failed",
    BotError: "unavailable",
    ConfigError: "validation_failed",
    RetrievalError: "unavailable",
    CircuitOpenError: "unavailable",
    LLMError: "unavailable",
    LLMTimeout: "unavailable",
    LLMRateLimited: "unavailable",
    LLMUnavailable: "unavailable",
    LLMConnectionError: "unavailable",
    LLMProtocolError: "unavailable",
    LLMContextTooLong: "unavailable",
    LLMRejected: "unavailable",
}

#: Every error a client is told about by code; anything else is ``internal``.
CLIENT_ERRORS: tuple[type[Exception], ...] = (ParleyError, KnowledgeError, BotError)


def status_for_code(code: str) -> int:
    entry = CODES.get(code)
    return entry.status if entry is not None else 500


def close_code_for(code: str) -> int:
    """The WebSocket close code a session ends with after a fatal frame or ``bye`` of ``code``."""
    entry = CODES.get(code)
    return entry.close if entry is not None else 1008


def as_parley(exc: Exception) -> ParleyError:
    """The error a client is shown for ``exc``: a ParleyError as it is, a knowledge or bots
    error by :data:`FOREIGN_CODES` (nearest class), anything else as ``internal``."""
    if isinstance(exc, ParleyError):
        return exc
    code = next((FOREIGN_CODES[cls] for cls in type(exc).__mro__ if cls in FOREIGN_CODES), None)
    if code is None:
        return ParleyError("internal error", code="internal")
    if isinstance(exc, BotError) and not isinstance(exc, ConfigError):
        # A provider's message may name hosts or keys: the client learns only which failure it was.
        return ParleyError(f"the AI agent is unavailable ({exc.code})", code=code)
    return ParleyError(str(getattr(exc, "detail", exc)), code=code)


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "detail": detail}
    err.update({k: v for k, v in extra.items() if v is not None})
    return {"error": err}


# ---- REST: Litestar's exception handlers


def _client_error(_req: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    err = as_parley(exc)
    headers = {}
    if err.retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, -(-err.retry_after_ms // 1000)))  # whole seconds, rounded up
    return Response(error_body(err.code, err.detail, field=err.field, retry_after_ms=err.retry_after_ms),
                    status_code=err.status, headers=headers)


#: Litestar's own HTTP errors (routing, parsing, body size) by status: the code they mean.
_FRAMEWORK_CODES = {400: "bad_frame", 401: "auth_required", 403: "forbidden", 404: "not_found", 405: "not_found",
                    413: "too_long", 415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable"}


def _http_error(_req: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    detail = str(exc.detail)
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        field = None
        if extra and isinstance(extra[0], dict):
            field = str(extra[0].get("key") or "") or None
            detail = f"{detail}: {extra[0].get('message', '')}".strip(": ")
        # A body that does not parse at all is a malformed frame (400); a parsed one that fails
        # validation is validation_failed (422).
        if "malformed" in detail.lower() or "decode" in detail.lower():
            return Response(error_body("bad_frame", detail), status_code=status_for_code("bad_frame"))
        return Response(error_body("validation_failed", detail, field=field),
                        status_code=status_for_code("validation_failed"))
    code = _FRAMEWORK_CODES.get(status)
    if isinstance(exc, NotAuthorizedException):
        code = "auth_required"
    if code is None:
        code = "validation_failed" if 400 <= status < 500 else "internal"
    return Response(error_body(code, detail), status_code=status)


def _too_deep(_req: Request[Any, Any, Any], _exc: RecursionError) -> Response[Any]:
    # The JSON decoder recurses once per nesting level: a body nested thousands deep is bad input.
    return Response(error_body("bad_frame", "JSON nested too deep"), status_code=status_for_code("bad_frame"))


def _internal_error(_req: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return Response(error_body("internal", "internal error"), status_code=status_for_code("internal"))


def exception_handlers() -> dict[type[Exception] | int, Any]:
    """The app's exception handlers: every client error by its code, the rest as ``internal``."""
    handlers: dict[type[Exception] | int, Any] = dict.fromkeys(CLIENT_ERRORS, _client_error)
    handlers.update({HTTPException: _http_error, RecursionError: _too_deep, Exception: _internal_error})
    return handlers
