"""Small helpers for REST answers in tests."""

import httpx

__all__ = ["err"]


def err(r: httpx.Response) -> tuple[int, str, str | None]:
    """An error answer as (status, code, field)."""
    e = r.json()["error"]
    return r.status_code, e["code"], e.get("field")
