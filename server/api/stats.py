"""The admin dashboard's figures, for the caller's tenant only (``/metrics`` has no tenant data)."""

from typing import Any

from litestar import get

from server.api.deps import Auth, GatewayDep, MetricsDep, require

__all__ = ["stats_handlers"]


@get("/v1/admin/stats")
async def admin_stats(principal: Auth, gateway: GatewayDep, metrics: MetricsDep) -> dict[str, Any]:
    require(principal, "admin")
    tenant = principal.tenant_id
    # this node's sockets of this tenant; a walk over the sessions costs less than keeping a count
    connections = sum(1 for s in list(gateway.sessions.values())
                      if s.principal is not None and s.principal.tenant_id == tenant)
    return {"connections": connections, **metrics.tenants.snapshot(tenant)}


stats_handlers = [admin_stats]
