"""The admin dashboard's figures, for the caller's tenant only (``/metrics`` has no tenant data)."""

from typing import Any

from litestar import Request, get

from server.api.deps import Auth, require

__all__ = ["stats_handlers"]


@get("/v1/admin/stats")
async def admin_stats(request: Request[Any, Any, Any], principal: Auth) -> dict[str, Any]:
    require(principal, "admin")
    st = request.app.state
    tenant = principal.tenant_id
    # this node's sockets of this tenant; a walk over the sessions costs less than keeping a count
    connections = sum(1 for s in list(st.gateway.sessions.values())
                      if s.principal is not None and s.principal.tenant_id == tenant)
    return {"connections": connections, **st.metrics.tenants.snapshot(tenant)}


stats_handlers = [admin_stats]
