"""Liveness, readiness and Prometheus metrics."""

import hmac
from typing import Any

from litestar import MediaType, Request, Response, get

from server.errors import AuthError

__all__ = ["health_handlers"]


@get("/healthz", media_type=MediaType.JSON)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", media_type=MediaType.JSON)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    st = request.app.state
    checks: dict[str, bool] = {
        "database": await st.db.ping(),
        "bus": await st.bus.healthy(),
        "accepting": not st.gateway.draining,
    }
    if st.readiness_probes:
        for name, probe in st.readiness_probes.items():
            try:
                checks[name] = bool(await probe())
            except Exception:  # noqa: BLE001 (a readiness probe is any check: whatever it raises means not ready)
                checks[name] = False
    ready = all(checks.values())
    return Response({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@get("/metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, Any]) -> bytes:
    # No tenant data is here (server.core.metrics); a token keeps even the totals to the operator.
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise AuthError("/metrics needs the operator's bearer token", code="token_invalid")
    body: bytes = request.app.state.metrics.render()
    return body


health_handlers = [healthz, readyz, metrics]
