"""Liveness, readiness and Prometheus metrics."""

import hmac
from typing import Any

from litestar import MediaType, Request, Response, get

from server.api.deps import BusDep, DbDep, GatewayDep, MetricsDep, ProbesDep, SettingsDep
from server.errors import AuthError

__all__ = ["health_handlers"]


@get("/healthz", media_type=MediaType.JSON)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", media_type=MediaType.JSON)
async def readyz(db: DbDep, bus: BusDep, gateway: GatewayDep, readiness_probes: ProbesDep) -> Response[dict[str, Any]]:
    checks: dict[str, bool] = {
        "database": await db.ping(),
        "bus": await bus.healthy(),
        "accepting": not gateway.draining,
    }
    if readiness_probes:
        for name, probe in readiness_probes.items():
            try:
                checks[name] = bool(await probe())
            except Exception:  # noqa: BLE001 (a readiness probe is any check: whatever it raises means not ready)
                checks[name] = False
    ready = all(checks.values())
    return Response({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@get("/metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, Any], settings: SettingsDep, metrics: MetricsDep) -> bytes:
    # No tenant data is here (server.core.metrics); a token keeps even the totals to the operator.
    token = settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise AuthError("/metrics needs the operator's bearer token", code="token_invalid")
    body: bytes = metrics.render()
    return body


health_handlers = [healthz, readyz, metrics]
