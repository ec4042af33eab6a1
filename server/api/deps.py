"""Dependencies shared by the REST handlers: the authenticated principal and role checks."""

from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from server.accounts.auth import Principal, authenticate_bearer, token_limits
from server.errors import Forbidden

__all__ = ["Auth", "get_principal", "require"]

#: The authenticated caller, injected by name into every handler that declares it.
Auth = NamedDependency[Principal]


async def get_principal(request: Request[Any, Any, Any]) -> Principal:
    st = request.app.state
    return await authenticate_bearer(st.db, request.headers.get("authorization"), token_limits(st.settings))


def require(p: Principal, *roles: str) -> Principal:
    if p.role not in roles:
        raise Forbidden(f"this endpoint is for {', '.join(roles)}")
    return p
