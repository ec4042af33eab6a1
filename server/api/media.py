"""Which bodies a route takes. A JSON route that took ``text/plain`` would be reachable from
any web page by a plain HTML form or ``fetch`` without a CORS preflight; so a body must say it
is JSON (or one of the types the route lists in ``opt["body_types"]``), else the answer is 415
``unsupported_media_type``."""

from typing import Any

from litestar import Request

from server.errors import BadInput

__all__ = ["JSON_ONLY", "require_declared_body_type"]

JSON_ONLY = ("application/json",)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _has_body(request: Request[Any, Any, Any]) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


async def require_declared_body_type(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook for every route."""
    if request.method not in _BODY_METHODS or not _has_body(request):
        return
    allowed: tuple[str, ...] = tuple(request.route_handler.opt.get("body_types", JSON_ONLY))
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in allowed or ("application/json" in allowed and media.startswith("application/")
                            and media.endswith("+json")):
        return
    raise BadInput(f"this route takes {' or '.join(allowed)} bodies, not {media or 'an undeclared type'!r}",
                   code="unsupported_media_type")
