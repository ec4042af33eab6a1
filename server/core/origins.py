"""Whose browser pages may open ``/v1/ws``: an origin is its scheme, host and port, all three
compared (a page served over plain http must not ride the https site's sockets)."""

from urllib.parse import urlsplit

__all__ = ["Origin", "origin_allowed", "origin_of"]

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEB_SCHEME = {"ws": "http", "wss": "https"}


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of a URL or an ``Origin`` header, default ports filled in and
    ``ws``/``wss`` read as ``http``/``https``; None when it is not one (``null``, garbage)."""
    try:
        parts = urlsplit(url.strip())
        scheme = _WEB_SCHEME.get(parts.scheme.lower(), parts.scheme.lower())
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not scheme or not host or port is None:
        return None
    return scheme, host, port


def origin_allowed(origin: str | None, allowed: list[str], *, own: str | None) -> bool:
    """``own`` is this server's public URL (``public_url``) or, without one, the scheme and
    ``Host`` of the request itself."""
    if origin is None:
        return True  # not a browser: tokens, not origins, protect non-browser clients
    if "*" in allowed:
        return True
    theirs = origin_of(origin)
    if theirs is None:
        return False
    if any(theirs == origin_of(a) for a in allowed):
        return True
    return own is not None and theirs == origin_of(own)
